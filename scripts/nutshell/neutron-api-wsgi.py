# neutron-api as uwsgi loads it in ConPaaS in a Nutshell (installed by
# scripts/nutshell/openstack-aio.sh as the ini's wsgi-file): Debian's
# /usr/bin/neutron-api, then SQLAlchemy's mappers configured before the
# first request. Neutron's get_ports names Port.port_forwardings, a backref
# that exists only once the mappers are configured, which a worker's first
# query on another resource does; when its first request is GET
# /v2.0/ports (Nova healing its cache, the director polling a server
# after neutron-api restarted), that request and every later one fail with
# "AttributeError: type object 'Port' has no attribute 'port_forwardings'".
from neutron.cmd.eventlet.server import main_api_eventlet
from neutron.db.migration.models import head  # noqa: F401 (every model, as neutron-db-manage loads them)
from sqlalchemy import orm

application = main_api_eventlet()
orm.configure_mappers()
