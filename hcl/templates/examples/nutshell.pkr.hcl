# ConPaaS in a Nutshell: the conpaas.img disk packed as a VirtualBox
# appliance with the backend VM's hardware from the installation guide:
# 4 CPUs, 4 GB of RAM, NIC1 NAT (eth0), NIC2 host-only on vboxnet0
# (192.168.56.0/24, host .1).

variable "mirror" {
  type    = string
  default = "http://deb.debian.org/debian"
}

variable "nutshell_ip" {
  type        = string
  default     = "192.168.56.10"
  description = "The appliance's address on VirtualBox's host-only network (NIC2)"
  validation {
    condition     = can(regex("^192\\.168\\.56\\.[0-9]+$", var.nutshell_ip))
    error_message = "The Nutshell lives on the host-only network 192.168.56.0/24."
  }
}

variable "password" {
  type        = string
  default     = "conpaas"
  description = "Password of OpenStack's admin, of every service and of the director's user test"
}

variable "ssh_authorized_key" {
  type        = string
  default     = ""
  description = "An SSH public key for root on the appliance (none by default: log in on the console)"
}

locals {
  # The services image's packages: hcl/templates/examples/lxc.pkr.hcl's.
  lxc_services = ["python3", "python3-openssl", "python3-simplejson", "python3-pycurl",
  "nginx", "php-fpm", "php-curl", "php-zip", "php-mysql", "mariadb-client"]
  lxc_system = ["openssh-server", "ca-certificates", "curl", "wget", "iproute2", "less", "nano",
  "cron", "logrotate", "rsyslog"]
}

# The ConPaaS services image the Nutshell starts its ConPaaS VMs from: the
# LXC variant (hcl/templates/examples/lxc.pkr.hcl), since its compute
# service is nova-compute-lxc. It is built first, copied into the disk
# below with its catalogue entry, and registered in Glance and in the
# director's catalogue on first boot.
image "conpaas-lxc" {
  kind    = "lxc"
  arch    = "amd64"
  version = "2.1.0"
  output  = "conpaas-lxc.img"
  size    = "2GiB"

  distribution {
    suite    = "bookworm"
    mirror   = var.mirror
    variant  = "minbase"
    packages = concat(local.lxc_system, local.lxc_services)
  }

  provisioner "shell" {
    inline = ["mkdir -p /etc/cpsmanager/certs /etc/cpsagent/certs"]
  }
}

# All-in-one OpenStack on LXC plus the ConPaaS director. The OpenStack
# packages are installed and configured by scripts/nutshell/openstack-aio.sh;
# the databases, Keystone endpoints, the network and the director are set up
# on first boot by scripts/nutshell/firstboot.sh (conpaas-nutshell-setup).
image "nutshell-disk" {
  kind    = "raw"
  version = "2.1.0"
  output  = "nutshell-disk.img"
  # Room for the services image three times over: in Glance, in Nova's
  # image cache and as an instance's disk (sparse: unused space costs the
  # appliance nothing).
  size = "16GiB"
  # The Nutshell runs ConPaaS; it is not one of its service VMs.
  hostname      = "conpaas-nutshell"
  contextualize = false

  distribution {
    mirror   = var.mirror
    packages = ["openssh-server", "ca-certificates", "curl", "python3", "sudo", "debconf-utils"]
  }

  partition "bios" {
    fs   = "bios_grub"
    size = "1MiB"
  }
  partition "esp" {
    fs    = "esp"
    size  = "64MiB"
    mount = "/boot/efi"
  }
  partition "root" {
    fs    = "ext4"
    mount = "/"
  }

  bootloader {
    type    = "grub"
    bios    = true
    uefi    = true
    cmdline = "console=tty0 console=ttyS0,115200n8 net.ifnames=0"
  }

  environment = {
    NUTSHELL_IP       = var.nutshell_ip
    NUTSHELL_PASSWORD = var.password
    NUTSHELL_SSH_KEY  = var.ssh_authorized_key
  }

  provisioner "file" {
    image       = "conpaas-lxc" # with conpaas-lxc.img.catalogue.json, its catalogue entry
    destination = "/var/lib/conpaas-nutshell/conpaas-lxc.img"
  }

  provisioner "file" {
    source      = "${path.root}/../../../bin/cpsdirector" # make build (make nutshell) puts it there
    destination = "/usr/local/bin/cpsdirector"
    mode        = "0755"
  }
  provisioner "file" {
    source      = "${path.root}/../../../scripts/nutshell/cpsdirector.service"
    destination = "/etc/systemd/system/cpsdirector.service"
  }
  provisioner "file" {
    source      = "${path.root}/../../../scripts/nutshell/firstboot.sh"
    destination = "/usr/local/sbin/conpaas-nutshell-setup"
    mode        = "0755"
  }
  provisioner "file" {
    source      = "${path.root}/../../../scripts/nutshell/nutshell-openstack.py"
    destination = "/usr/local/sbin/conpaas-nutshell-openstack"
    mode        = "0755"
  }
  provisioner "file" {
    source      = "${path.root}/../../../scripts/nutshell/neutron-api-wsgi.py"
    destination = "/usr/local/lib/conpaas-nutshell/neutron-api-wsgi.py"
  }
  provisioner "shell" {
    script = "${path.root}/../../../scripts/nutshell/openstack-aio.sh"
  }
}

image "nutshell" {
  kind    = "ova"
  version = "2.1.0"
  output  = "ConPaaS-Nutshell-2.1.0.ova"
  source  = "nutshell-disk"

  vm {
    name            = "ConPaaS-Nutshell"
    os_type         = "Debian_64"
    cpus            = 4
    memory          = 4096
    disk_controller = "sata"
    nic {
      type = "nat"
    }
    nic {
      type    = "hostonly"
      network = "vboxnet0"
    }
  }
}
