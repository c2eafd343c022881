# The default cps template: conpaas.img, the x86_64 image ConPaaS starts its
# manager and agent VMs from (EC2 and OpenStack/KVM).
#
#   cpsimage build                       # this template, embedded in cpsimage
#   cpsimage build -var mirror=http://ftp.nl.debian.org/debian
#   cpsimage inspect                     # the resolved build plan

variable "mirror" {
  type        = string
  default     = "http://deb.debian.org/debian"
  description = "Debian mirror the root filesystem is bootstrapped from."
}

variable "suite" {
  type    = string
  default = "bookworm"
}

variable "size" {
  type        = string
  default     = "3GiB"
  description = "Size of conpaas.img; the root filesystem fills what the boot partitions leave."
}

variable "version" {
  type    = string
  default = "2.1.0"
}

locals {
  # What a ConPaaS manager or agent VM runs: the Python services, their web
  # front ends, and what contextualization needs (curl, the CA bundle).
  # nginx and php-fpm are not started at boot (the agent starts them with
  # its own configuration) and nginx has no default site. The network is
  # systemd-networkd's alone (DHCP on every NIC, set up by the raw
  # builder), so there is no ifupdown or isc-dhcp-client.
  services = ["python3", "python3-openssl", "python3-simplejson", "python3-pycurl",
  "nginx", "php-fpm", "php-curl", "php-zip", "php-mysql", "mariadb-client"]
  system = ["openssh-server", "ca-certificates", "curl", "wget", "iproute2", "less", "nano",
  "cron", "logrotate", "rsyslog"]
}

image "conpaas" {
  kind      = "raw"
  arch      = "amd64"
  version   = var.version
  output    = "conpaas.img"
  size      = var.size
  alignment = "1MiB"

  distribution {
    suite      = var.suite
    mirror     = var.mirror
    components = ["main"]
    variant    = "minbase"
    packages   = concat(local.system, local.services)
  }

  partition "bios" {
    fs   = "bios_grub"
    size = "1MiB"
  }
  partition "esp" {
    fs    = "esp"
    size  = "64MiB"
    label = "ESP"
    mount = "/boot/efi"
  }
  partition "root" {
    fs    = "ext4"
    size  = "*"
    label = "conpaas-root"
    mount = "/"
  }

  bootloader {
    type    = "grub"
    bios    = true
    uefi    = true
    cmdline = "console=tty0 console=ttyS0,115200n8 net.ifnames=0"
    timeout = 1
  }

  provisioner "shell" {
    inline = ["mkdir -p /etc/cpsmanager/certs /etc/cpsagent/certs"]
  }

  checksums = ["md5", "sha256"]
}
