#!/bin/sh
# Provisioner for the ConPaaS Raspberry Pi SD card: makes the Pi an
# OpenStack compute node on LXC running only nova-compute and cinder-volume,
# with every other service on the controller at $CONTROLLER_IP (the RPi
# backend VM) on the 172.16.0.0/24 LAN. Runs inside the root filesystem
# (chroot, under qemu-user at build time): it writes configuration only and
# starts nothing.
set -eu
: "${CONTROLLER_IP:?set CONTROLLER_IP (template environment)}"
NODE_IP=${NODE_IP:-172.16.0.11}
case "$CONTROLLER_IP" in
  172.16.0.*) ;;
  *) echo "compute-node.sh: CONTROLLER_IP $CONTROLLER_IP is not on 172.16.0.0/24" >&2; exit 1 ;;
esac

echo conpaas-rpi > /etc/hostname
cat > /etc/hosts <<EOT
127.0.0.1	localhost
$NODE_IP	conpaas-rpi
$CONTROLLER_IP	controller
EOT

# eth0 on the Pi LAN, bridged so LXC instances share it (nova-network br100).
mkdir -p /etc/network/interfaces.d
cat > /etc/network/interfaces.d/br100 <<EOT
auto lo
iface lo inet loopback

auto eth0
iface eth0 inet manual

auto br100
iface br100 inet static
	address $NODE_IP/24
	gateway $CONTROLLER_IP
	bridge_ports eth0
	bridge_stp off
	bridge_fd 0
EOT

if [ -d /etc/nova ]; then
cat > /etc/nova/nova.conf <<EOT
[DEFAULT]
my_ip = $NODE_IP
transport_url = rabbit://openstack:openstack@controller
compute_driver = libvirt.LibvirtDriver
state_path = /var/lib/nova
log_dir = /var/log/nova

[api]
auth_strategy = keystone

[keystone_authtoken]
www_authenticate_uri = http://controller:5000/
auth_url = http://controller:5000/
memcached_servers = controller:11211
auth_type = password
project_domain_name = Default
user_domain_name = Default
project_name = service
username = nova
password = nova

[libvirt]
virt_type = lxc

[vnc]
enabled = false

[glance]
api_servers = http://controller:9292

[oslo_concurrency]
lock_path = /var/lib/nova/tmp

[placement]
region_name = RegionOne
project_domain_name = Default
project_name = service
auth_type = password
user_domain_name = Default
auth_url = http://controller:5000/v3
username = placement
password = placement
EOT
fi

if [ -d /etc/cinder ]; then
cat > /etc/cinder/cinder.conf <<EOT
[DEFAULT]
my_ip = $NODE_IP
transport_url = rabbit://openstack:openstack@controller
auth_strategy = keystone
enabled_backends = lvm
glance_api_servers = http://controller:9292
state_path = /var/lib/cinder

[database]
connection = mysql+pymysql://cinder:cinder@controller/cinder

[keystone_authtoken]
www_authenticate_uri = http://controller:5000
auth_url = http://controller:5000
memcached_servers = controller:11211
auth_type = password
project_domain_name = default
user_domain_name = default
project_name = service
username = cinder
password = cinder

[lvm]
volume_driver = cinder.volume.drivers.lvm.LVMVolumeDriver
volume_group = cinder-volumes
target_protocol = iscsi
target_helper = tgtadm

[oslo_concurrency]
lock_path = /var/lib/cinder/tmp
EOT
fi

# Only the compute-node services run on the Pi.
for s in nova-compute cinder-volume tgt lxc-net; do
  [ -e "/lib/systemd/system/$s.service" ] && systemctl enable "$s" >/dev/null 2>&1 || true
done
# A marker the boot check reads on the serial console.
mkdir -p /etc/systemd/system/multi-user.target.wants
cat > /etc/systemd/system/conpaas-rpi-ready.service <<'EOT'
[Unit]
Description=ConPaaS RPi readiness marker
After=multi-user.target

[Service]
Type=oneshot
ExecStart=/bin/sh -c 'echo CONPAAS-RPI-READY > /dev/console'

[Install]
WantedBy=multi-user.target
EOT
ln -sf /etc/systemd/system/conpaas-rpi-ready.service /etc/systemd/system/multi-user.target.wants/conpaas-rpi-ready.service
