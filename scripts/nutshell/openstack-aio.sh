#!/bin/sh
# Provisioner for ConPaaS in a Nutshell (build time, inside the image's
# chroot): installs an all-in-one OpenStack (Debian's packages: Keystone,
# Glance, Placement, Nova with the libvirt LXC driver, Neutron linuxbridge
# with a flat network on the host-only NIC) and writes its configuration for
# the host-only network. Nothing is started here and no database exists
# yet: conpaas-nutshell-setup (firstboot.sh) creates the databases, users,
# endpoints and the network on first boot, then starts the director.
#
# Environment (the template's env): NUTSHELL_IP (192.168.56.10),
# NUTSHELL_PASSWORD (the one password of every service and of admin),
# NUTSHELL_SSH_KEY (an SSH public key for root, optional).
set -eu
IP=${NUTSHELL_IP:-192.168.56.10}
PW=${NUTSHELL_PASSWORD:-conpaas}
case "$IP" in
  192.168.56.*) ;;
  *) echo "openstack-aio.sh: NUTSHELL_IP $IP is not on VirtualBox's host-only 192.168.56.0/24" >&2; exit 1 ;;
esac

# Debian's OpenStack packages ask (debconf) to create databases and
# endpoints; there is no database at build time, so every such question is
# answered "no" and firstboot.sh does that work.
for p in keystone glance-common placement-common nova-common neutron-common; do
  echo "$p $p/configure_db boolean false"
  echo "$p $p/dbconfig-install boolean false"
  echo "$p $p/register-endpoint boolean false"
  echo "$p $p/configure_ksat boolean false"
  echo "$p $p/configure_rabbit boolean false"
done | debconf-set-selections
echo "keystone keystone/create-admin-tenant boolean false" | debconf-set-selections

export DEBIAN_FRONTEND=noninteractive
# A few hundred packages: a mirror or DNS hiccup must not fail the build.
# What was downloaded stays in apt's cache between attempts.
retry() {
  for wait in 10 30 60 120 0; do
    "$@" && return 0
    [ "$wait" -gt 0 ] || return 1
    echo "openstack-aio.sh: '$*' failed; retrying in ${wait}s" >&2
    sleep "$wait"
  done
}
retry apt-get update
retry apt-get install -y --no-install-recommends -o Acquire::Retries=10 \
  mariadb-server python3-pymysql rabbitmq-server memcached python3-memcache \
  keystone python3-openstackclient \
  glance placement-api \
  nova-api nova-conductor nova-scheduler nova-compute-lxc \
  neutron-server neutron-plugin-ml2 neutron-linuxbridge-agent neutron-dhcp-agent neutron-metadata-agent \
  libvirt-daemon-driver-lxc bridge-utils nftables
apt-get clean
rm -rf /var/lib/apt/lists/*

# db DATABASE [USER]: nova_api and nova_cell0 belong to the user nova.
db() { echo "mysql+pymysql://${2:-$1}:$PW@localhost/$1"; }
authtoken() {
  cat <<EOT
[keystone_authtoken]
www_authenticate_uri = http://$IP:5000/
auth_url = http://$IP:5000/
memcached_servers = localhost:11211
auth_type = password
project_domain_name = Default
user_domain_name = Default
project_name = service
username = $1
password = $PW
EOT
}

# keystoneauth USER AUTH_URL: the password credentials one service uses to
# call another (nova's [service_user], [placement], [neutron]; neutron's [nova]).
keystoneauth() {
  cat <<EOT
auth_url = $2
auth_type = password
project_domain_name = Default
user_domain_name = Default
project_name = service
username = $1
password = $PW
EOT
}

cat > /etc/keystone/keystone.conf <<EOT
[DEFAULT]
log_dir = /var/log/keystone
[database]
connection = $(db keystone)
[token]
provider = fernet
EOT

cat > /etc/glance/glance-api.conf <<EOT
[DEFAULT]
bind_host = 0.0.0.0
workers = 2
[database]
connection = $(db glance)
$(authtoken glance)
[paste_deploy]
flavor = keystone
[glance_store]
stores = file,http
default_store = file
filesystem_store_datadir = /var/lib/glance/images/
EOT

cat > /etc/placement/placement.conf <<EOT
[placement_database]
connection = $(db placement)
[api]
auth_strategy = keystone
$(authtoken placement)
EOT

cat > /etc/nova/nova.conf <<EOT
[DEFAULT]
my_ip = $IP
# Under emulation a service's 10 s state report has been seen 85 s late:
# with the default 60 s the scheduler would count nova-compute down.
service_down_time = 300
transport_url = rabbit://openstack:$PW@localhost
state_path = /var/lib/nova
log_dir = /var/log/nova
compute_driver = libvirt.LibvirtDriver
# Each instance gets a raw copy of the image, mounted through a loop
# device. With Nova's default (qcow2 overlays) the LXC driver mounts through
# qemu-nbd, which needs the nbd module loaded: Nova does not load it.
use_cow_images = false
[api]
auth_strategy = keystone
[api_database]
connection = $(db nova_api nova)
[database]
connection = $(db nova)
$(authtoken nova)
[service_user]
send_service_user_token = true
$(keystoneauth nova "http://$IP:5000/")
[glance]
api_servers = http://$IP:9292
[placement]
region_name = RegionOne
$(keystoneauth placement "http://$IP:5000/v3")
[neutron]
region_name = RegionOne
$(keystoneauth neutron "http://$IP:5000")
service_metadata_proxy = true
metadata_proxy_shared_secret = $PW
[libvirt]
# ConPaaS in a Nutshell runs its VMs as containers (LXC), as the guide says.
virt_type = lxc
[vnc]
enabled = false
[oslo_concurrency]
lock_path = /var/lib/nova/tmp
[oslo_messaging_rabbit]
# No AMQP heartbeats on this one host: under emulation a service blocked
# for a minute (nova-compute copying an image) misses them, RabbitMQ drops
# its connections, and the reconnects left neutron-api's port create hung
# (the first TestNutshellService run). A dead local connection is seen anyway.
heartbeat_timeout_threshold = 0
[scheduler]
discover_hosts_in_cells_interval = 60
workers = 1
[conductor]
workers = 1
EOT

cat > /etc/neutron/neutron.conf <<EOT
[DEFAULT]
# Neutron sends nothing to an agent it counts down (default: no report for
# 75 s): the DHCP agent, late under emulation, missed the hostonly
# network, so instances got no address and no metadata route.
agent_down_time = 300
core_plugin = ml2
service_plugins =
transport_url = rabbit://openstack:$PW@localhost
auth_strategy = keystone
api_workers = 1
rpc_workers = 1
rpc_state_report_workers = 1
notify_nova_on_port_status_changes = true
notify_nova_on_port_data_changes = true
[database]
connection = $(db neutron)
$(authtoken neutron)
[nova]
region_name = RegionOne
$(keystoneauth nova "http://$IP:5000")
[oslo_concurrency]
lock_path = /var/lib/neutron/tmp
[oslo_messaging_rabbit]
# No AMQP heartbeats on this one host: under emulation a service blocked
# for a minute (nova-compute copying an image) misses them, RabbitMQ drops
# its connections, and the reconnects left neutron-api's port create hung
# (the first TestNutshellService run). A dead local connection is seen anyway.
heartbeat_timeout_threshold = 0
[agent]
# This file replaces Debian's, which carried these: without them privsep
# runs a bare "sudo privsep-helper", which the sudoers rules refuse.
root_helper = sudo /usr/bin/neutron-rootwrap /etc/neutron/rootwrap.conf
root_helper_daemon = sudo /usr/bin/neutron-rootwrap-daemon /etc/neutron/rootwrap.conf
[experimental]
# Neutron marks ML2/linuxbridge experimental and refuses to start without
# this; it is still the simple choice for one host with LXC instances.
linuxbridge = true
EOT
cat > /etc/neutron/plugins/ml2/ml2_conf.ini <<EOT
[ml2]
type_drivers = flat
tenant_network_types =
mechanism_drivers = linuxbridge
extension_drivers = port_security
[ml2_type_flat]
flat_networks = hostonly
EOT
# The instances' network is the host-only network itself (NIC2, eth1, in
# the bridge br-hostonly that systemd-networkd makes, below): the host
# reaches every ConPaaS VM at 192.168.56.x.
cat > /etc/neutron/plugins/ml2/linuxbridge_agent.ini <<EOT
[linux_bridge]
bridge_mappings = hostonly:br-hostonly
[vxlan]
enable_vxlan = false
[securitygroup]
enable_security_group = true
firewall_driver = neutron.agent.linux.iptables_firewall.IptablesFirewallDriver
EOT
cat > /etc/neutron/dhcp_agent.ini <<EOT
[DEFAULT]
interface_driver = linuxbridge
dhcp_driver = neutron.agent.linux.dhcp.Dnsmasq
enable_isolated_metadata = true
EOT
cat > /etc/neutron/metadata_agent.ini <<EOT
[DEFAULT]
nova_metadata_host = $IP
metadata_workers = 1
metadata_proxy_shared_secret = $PW
EOT

# Networking of the appliance: NIC1 NAT (eth0) takes DHCP from VirtualBox
# (the image's 80-conpaas-dhcp.network); NIC2 host-only (eth1) is a port of
# the bridge br-hostonly, which holds $IP and the DHCP agent's port. The
# bridge is systemd-networkd's, so the agent never moves the address off a
# NIC it does not own. Nova plugs the instances into another bridge
# (conpaas-nutshell-bridge, below, joins the two).
cat > /etc/systemd/network/10-nutshell-br-hostonly.netdev <<EOT
[NetDev]
Name=br-hostonly
Kind=bridge
EOT
cat > /etc/systemd/network/10-nutshell-eth1.network <<EOT
[Match]
Name=eth1

[Network]
Bridge=br-hostonly
EOT
cat > /etc/systemd/network/10-nutshell-br-hostonly.network <<EOT
[Match]
Name=br-hostonly

[Link]
RequiredForOnline=no

[Network]
Address=$IP/24
ConfigureWithoutCarrier=yes
LinkLocalAddressing=no
IPv6AcceptRA=no
EOT
printf '127.0.0.1\tlocalhost\n%s\tconpaas-nutshell controller\n' "$IP" > /etc/hosts

# The host-only network has a DHCP server of its own (VirtualBox's, or
# QEMU's in the tests) besides Neutron's. An instance takes the first
# offer, and with the other server's address Neutron's port security drops
# its traffic and it gets no route to the metadata service. The appliance
# has a fixed address and never asks; so no DHCP server answer coming in on
# eth1 is bridged to an instance: only Neutron's dnsmasq serves them. The
# rule is on eth1's ingress (table netdev), before the bridge: a chain on the
# bridge's forward hook (run 5) raced br_netfilter's hook, which takes IP
# frames through iptables and resumes only later hooks, and missed QEMU's
# offers.
mkdir -p /etc/conpaas-nutshell
cat > /etc/conpaas-nutshell/dhcp-guard.nft <<'EOT'
table netdev conpaas_nutshell
delete table netdev conpaas_nutshell
table netdev conpaas_nutshell {
	chain eth1 {
		type filter hook ingress device "eth1" priority -500; policy accept;
		ip protocol udp udp sport 67 udp dport 68 counter drop
	}
}
EOT
cat > /etc/systemd/system/conpaas-nutshell-dhcp-guard.service <<'EOT'
[Unit]
Description=ConPaaS in a Nutshell: only Neutron's DHCP server answers the instances
DefaultDependencies=no
BindsTo=sys-subsystem-net-devices-eth1.device
After=sys-subsystem-net-devices-eth1.device
Before=network-pre.target
Wants=network-pre.target

[Service]
Type=oneshot
RemainAfterExit=yes
ExecStart=/usr/sbin/nft -f /etc/conpaas-nutshell/dhcp-guard.nft

[Install]
WantedBy=multi-user.target
EOT
mkdir -p /etc/systemd/system/multi-user.target.wants
ln -sf /etc/systemd/system/conpaas-nutshell-dhcp-guard.service /etc/systemd/system/multi-user.target.wants/
# udev gives every new network device a MAC of its own
# (99-default.link, MACAddressPolicy=persistent), veths included: it raced
# libvirt setting the container end of an instance's veth to the port's MAC
# (run 5: eth0 with ce:b5:4d:16:0a:bb instead of fa:16:3e:22:ce:9c, no
# answer from Neutron's dnsmasq, traffic dropped by port security).
cat > /etc/systemd/network/10-conpaas-nutshell-veth.link <<'EOT'
[Match]
Driver=veth

[Link]
MACAddressPolicy=none
EOT
# Nova plugs an instance into the bridge "brq" + the network's ID (Nova's
# default for vif_type bridge: Neutron's linuxbridge driver, 21.x, passes it
# no bridge_name), while the linuxbridge agent maps hostonly to br-hostonly
# and leaves a tap that is already in a bridge where it is. Seen in run 5:
# the instance's tap alone in brqd34a700f-1d, its DHCP requests never
# reaching dnsmasq on br-hostonly. At every boot, and at the first once
# the network exists, a veth pair joins the two bridges.
cat > /usr/local/sbin/conpaas-nutshell-bridge <<'EOT'
#!/bin/sh
# conpaas-nutshell-bridge: joins Nova's bridge of network hostonly to
# br-hostonly (see openstack-aio.sh). Idempotent.
set -e
# The ID of network hostonly, which conpaas-nutshell-openstack resources
# writes (NUTSHELL_NETWORK_ID_FILE: another file, as in test/nutshell).
id=$(cat "${NUTSHELL_NETWORK_ID_FILE:-/etc/conpaas-nutshell/hostonly-network-id}" 2>/dev/null || true)
[ -n "$id" ] || { echo "conpaas-nutshell-bridge: no network hostonly yet"; exit 0; }
brq=brq$(printf %s "$id" | cut -c1-11)
i=0
until ip link show br-hostonly >/dev/null 2>&1; do
  i=$((i+1)); [ $i -le 60 ] || { echo "conpaas-nutshell-bridge: no bridge br-hostonly after 60 s" >&2; exit 1; }
  sleep 1
done
ip link show "$brq" >/dev/null 2>&1 || ip link add "$brq" type bridge
ip link show nutshell-brq >/dev/null 2>&1 || ip link add nutshell-brq type veth peer name nutshell-bro
ip link set nutshell-brq master "$brq"
ip link set nutshell-bro master br-hostonly
ip link set "$brq" up
ip link set nutshell-brq up
ip link set nutshell-bro up
echo "conpaas-nutshell-bridge: $brq joined to br-hostonly"
EOT
chmod 755 /usr/local/sbin/conpaas-nutshell-bridge
cat > /etc/systemd/system/conpaas-nutshell-bridge.service <<'EOT'
[Unit]
Description=ConPaaS in a Nutshell: Nova's bridge of network hostonly joined to br-hostonly
After=systemd-networkd.service
Before=nova-compute.service neutron-linuxbridge-agent.service

[Service]
Type=oneshot
RemainAfterExit=yes
ExecStart=/usr/local/sbin/conpaas-nutshell-bridge

[Install]
WantedBy=multi-user.target
EOT
ln -sf /etc/systemd/system/conpaas-nutshell-bridge.service /etc/systemd/system/multi-user.target.wants/
# Debian's own nftables.service would flush every ruleset (Neutron's
# iptables-nft ones too) if started: it stays off.
systemctl disable nftables 2>/dev/null || true

# An administrator's key for root (the template's ssh_authorized_key), if
# given: the way to the appliance's shell besides its console.
if [ -n "${NUTSHELL_SSH_KEY:-}" ]; then
  mkdir -p /root/.ssh
  chmod 700 /root/.ssh
  printf '%s\n' "$NUTSHELL_SSH_KEY" > /root/.ssh/authorized_keys
  chmod 600 /root/.ssh/authorized_keys
fi

# Debian's defaults (8 to 16 uwsgi processes per API, a worker per CPU for
# the rest) do not fit the 4 GB the guide gives the Nutshell: each process
# holds 100-150 MB of Python. With two of 4 threads each, a run under
# emulation filled the 4 GB once an instance started and the guest thrashed,
# re-reading its programs from disk, until sshd stopped answering.
uwsgi_workers() { # FILE PROCESSES THREADS
  sed -i -e "s/^processes = .*/processes = $2/" -e "s/^threads = .*/threads = $3/" "$1"
}
# Keystone and Placement: one process of 4 threads.
uwsgi_workers /etc/keystone/keystone-uwsgi.ini 1 4
uwsgi_workers /etc/placement/placement-api-uwsgi.ini 1 4
[ ! -f /etc/glance/glance-api-uwsgi.ini ] || uwsgi_workers /etc/glance/glance-api-uwsgi.ini 1 4
# nova-api and neutron-api are eventlet code: with uwsgi threads, a request
# and oslo.messaging's reconnect ended in "greenlet.error: cannot switch to
# a different thread", in neutron-api with a port create that never
# answered Nova, in a one-process nova-api with no answer at all (a second
# process had hidden it). Without threads they get their concurrency from
# two processes; the metadata API serves one request per instance boot.
uwsgi_workers /etc/nova/nova-api-uwsgi.ini 2 1
uwsgi_workers /etc/nova/nova-api-metadata-uwsgi.ini 1 1
uwsgi_workers /etc/neutron/neutron-api-uwsgi.ini 2 1
# neutron-api's wsgi-file configures SQLAlchemy's mappers before the first
# request (scripts/nutshell/neutron-api-wsgi.py says why).
sed -i -e 's|^wsgi-file = .*|wsgi-file = /usr/local/lib/conpaas-nutshell/neutron-api-wsgi.py|' /etc/neutron/neutron-api-uwsgi.ini
grep -q '^wsgi-file = /usr/local/lib/conpaas-nutshell/neutron-api-wsgi.py' /etc/neutron/neutron-api-uwsgi.ini

# No OpenStack service can start before first boot has made its database:
# they stay disabled until conpaas-nutshell-setup enables them in order.
# Several start at once on a small VM; systemd's default 90 s to report
# ready (Type=notify) is too short for nova-conductor there, and on a
# second boot under emulation nova-compute missed even 600 s and restarted
# from the beginning: a restart never helps a slow start, so wait 30 min.
units="keystone glance-api placement-api nova-api nova-api-metadata nova-conductor nova-scheduler nova-compute
  neutron-api neutron-rpc-server neutron-linuxbridge-agent neutron-dhcp-agent neutron-metadata-agent"
systemctl disable $units
for u in $units; do
  mkdir -p "/etc/systemd/system/$u.service.d"
  printf '[Service]\nTimeoutStartSec=1800\n' > "/etc/systemd/system/$u.service.d/10-nutshell-timeout.conf"
done
# Pulled in as dependencies, not used: LXC's own bridge and dnsmasq (Nova
# drives containers through libvirt) and the system haproxy (Neutron runs
# its own haproxy per network for metadata).
for u in lxc-net lxc haproxy; do
  systemctl disable "$u" 2>/dev/null || true
done

# The setup runs once, on first boot.
mkdir -p /etc/conpaas-nutshell
printf 'NUTSHELL_IP=%s\nNUTSHELL_PASSWORD=%s\n' "$IP" "$PW" > /etc/conpaas-nutshell/env
chmod 600 /etc/conpaas-nutshell/env
cat > /etc/systemd/system/conpaas-nutshell-setup.service <<EOT
[Unit]
Description=ConPaaS in a Nutshell: first-boot OpenStack and director setup
After=network-online.target mariadb.service rabbitmq-server.service memcached.service
Wants=network-online.target
ConditionPathExists=!/var/lib/conpaas-nutshell/done

[Service]
Type=oneshot
EnvironmentFile=/etc/conpaas-nutshell/env
ExecStart=/usr/local/sbin/conpaas-nutshell-setup
RemainAfterExit=yes
# Minutes with VirtualBox's hardware virtualization; most of an hour
# under plain emulation (QEMU TCG in the tests).
TimeoutStartSec=2h

[Install]
WantedBy=multi-user.target
EOT
mkdir -p /etc/systemd/system/multi-user.target.wants
ln -sf /etc/systemd/system/conpaas-nutshell-setup.service /etc/systemd/system/multi-user.target.wants/
