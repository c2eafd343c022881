#!/bin/sh
# conpaas-nutshell-setup: the first boot of ConPaaS in a Nutshell. Creates
# the OpenStack databases and Keystone's users, services and endpoints
# (all on the host-only address), syncs every service's database, makes the
# flat "hostonly" network for the ConPaaS VMs, registers the ConPaaS
# services image in Glance if the appliance carries one, then configures
# and starts cpsdirector. Each step is idempotent; a failed boot retries.
# Progress goes to the journal and the serial console.
set -eu
IP=${NUTSHELL_IP:-192.168.56.10}
PW=${NUTSHELL_PASSWORD:-conpaas}
say() { echo "conpaas-nutshell: $*"; echo "conpaas-nutshell: $*" > /dev/ttyS0 2>/dev/null || true; }
trap 'rc=$?; [ $rc -eq 0 ] || say "setup FAILED (exit $rc); see journalctl -u conpaas-nutshell-setup; it runs again on the next boot"' EXIT

# This machine is the Nutshell host, not a ConPaaS service VM: the raw
# builder's contextualization service has nothing to do here.
systemctl disable --now conpaas-contextualize.service 2>/dev/null || true
hostnamectl set-hostname conpaas-nutshell 2>/dev/null || echo conpaas-nutshell > /etc/hostname

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
systemctl restart keystone
export OS_USERNAME=admin OS_PASSWORD="$PW" OS_PROJECT_NAME=admin OS_USER_DOMAIN_NAME=Default \
  OS_PROJECT_DOMAIN_NAME=Default OS_AUTH_URL="http://$IP:5000/v3" OS_IDENTITY_API_VERSION=3
for i in $(seq 60); do openstack token issue >/dev/null 2>&1 && break; sleep 2; done
openstack project show service >/dev/null 2>&1 || openstack project create --domain default service
openstack project show demo >/dev/null 2>&1 || openstack project create --domain default demo

service() { # name type port path
  openstack user show "$1" >/dev/null 2>&1 || openstack user create --domain default --password "$PW" "$1"
  openstack role add --project service --user "$1" admin
  openstack service show "$2" >/dev/null 2>&1 || {
    openstack service create --name "$1" "$2"
    for i in public internal admin; do openstack endpoint create --region RegionOne "$2" $i "http://$IP:$3$4"; done
  }
}
service glance image 9292 ""
service placement placement 8778 ""
service nova compute 8774 /v2.1
service neutron network 9696 ""

say "service databases"
su -s /bin/sh -c "glance-manage db_sync" glance
su -s /bin/sh -c "placement-manage db sync" placement
su -s /bin/sh -c "nova-manage api_db sync" nova
su -s /bin/sh -c "nova-manage cell_v2 map_cell0" nova
su -s /bin/sh -c "nova-manage cell_v2 list_cells" nova | grep -q ' cell1 ' || su -s /bin/sh -c "nova-manage cell_v2 create_cell --name=cell1" nova
su -s /bin/sh -c "nova-manage db sync" nova
su -s /bin/sh -c "neutron-db-manage --config-file /etc/neutron/neutron.conf --config-file /etc/neutron/plugins/ml2/ml2_conf.ini upgrade head" neutron
for s in glance-api placement-api nova-api nova-scheduler nova-conductor nova-compute neutron-api neutron-rpc-server neutron-linuxbridge-agent neutron-dhcp-agent neutron-metadata-agent; do
  systemctl restart "$s" 2>/dev/null || true
done
for i in $(seq 90); do openstack compute service list --service nova-compute -f value -c State 2>/dev/null | grep -q up && break; sleep 2; done
su -s /bin/sh -c "nova-manage cell_v2 discover_hosts" nova

say "network and flavors"
openstack network show hostonly >/dev/null 2>&1 || {
  openstack network create --share --provider-physical-network hostonly --provider-network-type flat hostonly
  openstack subnet create --network hostonly --subnet-range 192.168.56.0/24 --gateway 192.168.56.1 \
    --allocation-pool start=192.168.56.100,end=192.168.56.200 --dns-nameserver 192.168.56.1 hostonly
}
openstack flavor show m1.small >/dev/null 2>&1 || openstack flavor create --vcpus 1 --ram 512 --disk 4 m1.small
openstack security group rule list default -f value -c "Port Range" | grep -q 443 || {
  for p in 22 80 443 5555 8000 8080 9000; do openstack security group rule create --proto tcp --dst-port $p default; done
  openstack security group rule create --proto icmp default
}

# The ConPaaS services image, if the appliance carries one (file provisioner).
if [ -f /var/lib/conpaas-nutshell/conpaas.img ] && ! openstack image show conpaas >/dev/null 2>&1; then
  say "registering the ConPaaS image in Glance"
  openstack image create --disk-format raw --container-format bare --public --file /var/lib/conpaas-nutshell/conpaas.img conpaas
fi

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
IMAGE_ID = $(openstack image show conpaas -f value -c id 2>/dev/null || echo conpaas)
FLAVOR = m1.small
SECURITY_GROUP_NAME = default
KEY_NAME = conpaas
EOT
  chmod 600 /etc/cpsdirector/director.cfg
fi
openstack --os-project-name demo keypair show conpaas >/dev/null 2>&1 || {
  [ -f /root/.ssh/id_ed25519 ] || ssh-keygen -q -t ed25519 -N '' -f /root/.ssh/id_ed25519
  openstack --os-project-name demo keypair create --public-key /root/.ssh/id_ed25519.pub conpaas
}
openstack role add --project demo --user admin admin 2>/dev/null || true
cpsdirector certs
echo "$PW" | cpsdirector adduser --password-stdin test 2>/dev/null || true
systemctl enable --now cpsdirector.service

mkdir -p /var/lib/conpaas-nutshell
touch /var/lib/conpaas-nutshell/done
say "ready: director at https://$IP:5555 (user test), OpenStack at http://$IP:5000/v3 (admin)"
