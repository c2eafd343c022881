# The ConPaaS services image for OpenStack with LXC on the Raspberry Pi: what
# the seeds publish as conpaas-rpi.img, started by the nova-compute-lxc of
# the Pi compute nodes (hcl/templates/examples/rpi-sdcard.pkr.hcl). The
# same image as lxc.pkr.hcl for ARM: one ext4 filesystem that Nova mounts
# as the container's root (docs/lxc.md). The Pi 2 runs armhf; a Pi 3 card
# with the arm64 kernel needs arch = "arm64" (-var arch=arm64). Foreign
# architectures are bootstrapped under qemu-user (scripts/deps.sh installs
# it).

variable "mirror" {
  type    = string
  default = "http://deb.debian.org/debian"
}

variable "version" {
  type    = string
  default = "2.1.0"
}

variable "arch" {
  type        = string
  default     = "armhf"
  description = "The compute nodes' Debian architecture: armhf (Pi 2, the seeds' image) or arm64."
  validation {
    condition     = contains(["armhf", "arm64"], var.arch)
    error_message = "A Raspberry Pi compute node is armhf or arm64."
  }
}

locals {
  services = ["python3", "python3-openssl", "python3-simplejson", "python3-pycurl",
  "nginx", "php-fpm", "php-curl", "php-zip", "php-mysql", "mariadb-client"]
  system = ["openssh-server", "ca-certificates", "curl", "wget", "iproute2", "less", "nano",
  "cron", "logrotate", "rsyslog"]
}

image "conpaas-rpi" {
  kind    = "lxc"
  arch    = var.arch
  version = var.version
  output  = "conpaas-rpi.img"
  size    = "2GiB"

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
