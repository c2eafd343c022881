#!/bin/sh
# conpaas-nutshell-setup: the first boot of ConPaaS in a Nutshell. Creates
# the OpenStack databases and Keystone's users, services and endpoints
# (all on the host-only address), syncs every service's database, makes the
# flat "hostonly" network for the ConPaaS VMs, registers the ConPaaS
# services image (the LXC image `make nutshell` copies in) in Glance and
# in the director's catalogue, then configures and starts cpsdirector. Each step is idempotent; a failed boot retries.
# Progress goes to the journal and the serial console.
set -eu
IP=${NUTSHELL_IP:-192.168.56.10}
PW=${NUTSHELL_PASSWORD:-conpaas}
export NUTSHELL_IP="$IP" NUTSHELL_PASSWORD="$PW"
# Started in this order once their databases exist (keystone first, alone).
OPENSTACK_UNITS="glance-api placement-api nova-api nova-api-metadata nova-conductor nova-scheduler libvirtd nova-compute neutron-api neutron-rpc-server neutron-linuxbridge-agent neutron-dhcp-agent neutron-metadata-agent"
say() { echo "conpaas-nutshell: $*"; echo "conpaas-nutshell: $*" > /dev/ttyS0 2>/dev/null || true; }
trap 'rc=$?; [ $rc -eq 0 ] || say "setup FAILED (exit $rc); see journalctl -u conpaas-nutshell-setup; it runs again on the next boot"' EXIT
# systemd stops a unit with SIGTERM, which does not run sh's EXIT trap.
trap 'exit 143' TERM

# OpenStack on one 4 GB host keeps much memory that is rarely touched: a
# swap file lets the kernel page it out instead of evicting the programs
# that run (a first boot without swap thrashed once an instance started).
# Made here, not at build time, so the disk image and the OVA stay small.
if [ ! -f /swapfile ]; then
  say "swap file"
  rm -f /swapfile.new
  fallocate -l 2G /swapfile.new
  chmod 600 /swapfile.new
  mkswap /swapfile.new >/dev/null
  mv /swapfile.new /swapfile
fi
grep -q '^/swapfile ' /etc/fstab || echo '/swapfile none swap sw 0 0' >> /etc/fstab
swapon --show=NAME --noheadings | grep -qx /swapfile || swapon /swapfile

say "creating databases"
for d in keystone glance placement nova_api nova nova_cell0 neutron; do
  u=$d
  case $d in nova_api|nova_cell0) u=nova ;; esac
  mysql -e "CREATE DATABASE IF NOT EXISTS $d; CREATE USER IF NOT EXISTS '$u'@'localhost' IDENTIFIED BY '$PW'; GRANT ALL PRIVILEGES ON $d.* TO '$u'@'localhost';"
done
rabbitmqctl list_users | grep -q '^openstack' || rabbitmqctl add_user openstack "$PW"
rabbitmqctl set_permissions openstack ".*" ".*" ".*"

say "keystone"
su -s /bin/sh -c "keystone-manage db_sync" keystone
keystone-manage fernet_setup --keystone-user keystone --keystone-group keystone
keystone-manage credential_setup --keystone-user keystone --keystone-group keystone
keystone-manage bootstrap --bootstrap-password "$PW" --bootstrap-admin-url "http://$IP:5000/v3/" \
  --bootstrap-internal-url "http://$IP:5000/v3/" --bootstrap-public-url "http://$IP:5000/v3/" --bootstrap-region-id RegionOne
# The OpenStack services were left disabled at build time (they cannot run
# before their databases exist); from here on they start at every boot.
systemctl enable keystone
systemctl restart keystone
conpaas-nutshell-openstack identity

# Bookworm's glance-manage has been seen to exit 255 after a complete
# first migration; a second run finds the schema current and exits 0, so a
# sync gets one more try before the setup gives up.
dbsync() { # user command
  su -s /bin/sh -c "$2" "$1" || { say "'$2' failed; trying once more"; su -s /bin/sh -c "$2" "$1"; }
}

say "service databases"
dbsync glance "glance-manage db_sync"
dbsync placement "placement-manage db sync"
dbsync nova "nova-manage api_db sync"
su -s /bin/sh -c "nova-manage cell_v2 map_cell0" nova
su -s /bin/sh -c "nova-manage cell_v2 list_cells" nova | grep -q ' cell1 ' || su -s /bin/sh -c "nova-manage cell_v2 create_cell --name=cell1" nova
dbsync nova "nova-manage db sync"
dbsync neutron "neutron-db-manage --config-file /etc/neutron/neutron.conf --config-file /etc/neutron/plugins/ml2/ml2_conf.ini upgrade head"

say "starting OpenStack"
for s in $OPENSTACK_UNITS; do
  systemctl enable "$s"
  systemctl restart "$s"
done
conpaas-nutshell-openstack wait-compute
su -s /bin/sh -c "nova-manage cell_v2 discover_hosts" nova

say "network, flavors and the ConPaaS image"
[ -f /root/.ssh/id_ed25519 ] || { mkdir -p /root/.ssh; ssh-keygen -q -t ed25519 -N '' -f /root/.ssh/id_ed25519; }
# The services image (the LXC image the appliance carries) goes into Glance
# and the director's catalogue; what to put in director.cfg comes back.
RESOURCES=$(NUTSHELL_PUBKEY=/root/.ssh/id_ed25519.pub conpaas-nutshell-openstack resources)
IMAGE_LINE=$(printf '%s\n' "$RESOURCES" | tail -n1)
# Nova's bridge of hostonly joined to br-hostonly, now that resources has
# written the network's ID (conpaas-nutshell-bridge).
/usr/local/sbin/conpaas-nutshell-bridge
# The DHCP agent serves the instances' addresses and their route to the
# metadata service. wait-dhcp gives a network no agent hosts to a live
# one; a restart (a full resync) of the agent is the last resort.
conpaas-nutshell-openstack wait-dhcp || { say "no DHCP server on hostonly yet: restarting neutron-dhcp-agent"; systemctl restart neutron-dhcp-agent; conpaas-nutshell-openstack wait-dhcp; }

say "director"
mkdir -p /etc/cpsdirector
if [ ! -f /etc/cpsdirector/director.cfg ]; then
  cat > /etc/cpsdirector/director.cfg <<EOT
[conpaas]
DIRECTOR_URL = https://$IP:5555
CONF_DIR = /etc/cpsdirector

[iaas]
DRIVER = openstack
AUTH_URL = http://$IP:5000/v3
USER = admin
PASSWORD = $PW
PROJECT = demo
DOMAIN = Default
REGION = RegionOne
$IMAGE_LINE
FLAVOR = m1.small
SECURITY_GROUP_NAME = default
KEY_NAME = conpaas

[director]
# A manager's first start copies the services image from Glance into
# Nova's cache and the instance's disk, which on a small appliance takes
# longer than the default 5 minutes before the manager can answer.
NODE_TIMEOUT = 30m
EOT
  chmod 600 /etc/cpsdirector/director.cfg
fi
cpsdirector certs
echo "$PW" | cpsdirector adduser --password-stdin test 2>/dev/null || true
# cpsdirector.service is ordered after this unit: a blocking start from
# here would wait for this very setup to end. Queue it instead.
systemctl enable cpsdirector.service
systemctl start --no-block cpsdirector.service
# The director's own view: clouds, the catalogue's image in Glance,
# certificates, ports. ConPaaS.tar.gz (/etc/cpsdirector/ConPaaS.tar.gz) is
# the user's to install, so check reports it missing: not a failed setup.
cpsdirector check || say "cpsdirector check reports the problems above (journalctl -u conpaas-nutshell-setup)"

mkdir -p /var/lib/conpaas-nutshell
touch /var/lib/conpaas-nutshell/done
say "ready: director at https://$IP:5555 (user test), OpenStack at http://$IP:5000/v3 (admin)"
