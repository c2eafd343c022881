# The ConPaaS services image for OpenStack with LXC (x86_64): what the seeds
# publish as conpaas-2.1.0-openstack-lxc.img, for clouds whose compute
# nodes run nova-compute-lxc (ConPaaS in a Nutshell among them). Nova's
# libvirt LXC driver mounts the image whole as the container's root and
# starts /sbin/init, so this is one ext4 filesystem, with no partition
# table, bootloader or kernel (docs/lxc.md).
#
#   cpsimage build hcl/templates/examples/lxc.pkr.hcl
#   glance image-create --name conpaas-lxc --disk-format raw --container-format bare --file conpaas-lxc.img

variable "mirror" {
  type    = string
  default = "http://deb.debian.org/debian"
}

variable "version" {
  type    = string
  default = "2.1.0"
}

locals {
  # conpaas.img's services (hcl/templates/conpaas.pkr.hcl). The network is
  # systemd-networkd's alone (DHCP on the veth Nova gives the container),
  # so ifupdown and isc-dhcp-client are left out.
  services = ["python3", "python3-openssl", "python3-simplejson", "python3-pycurl",
  "nginx", "php-fpm", "php-curl", "php-zip", "php-mysql", "mariadb-client"]
  system = ["openssh-server", "ca-certificates", "curl", "wget", "iproute2", "less", "nano",
  "cron", "logrotate", "rsyslog"]
}

image "conpaas-lxc" {
  kind    = "lxc"
  arch    = "amd64"
  version = var.version
  output  = "conpaas-lxc.img"
  # The filesystem's size: within the root disk of the smallest flavor
  # that starts it (the Nutshell's m1.small has 4 GB).
  size = "2GiB"

  distribution {
    suite    = "bookworm"
    mirror   = var.mirror
    variant  = "minbase"
    packages = concat(local.system, local.services)
  }

  provisioner "shell" {
    inline = ["mkdir -p /etc/cpsmanager/certs /etc/cpsagent/certs"]
  }

  checksums = ["md5", "sha256"]
}
