# ConPaaS in a Nutshell: the conpaas.img disk packed as a VirtualBox
# appliance with the backend VM's hardware from the installation guide:
# 4 CPUs, 4 GB of RAM, NIC1 NAT (eth0), NIC2 host-only on vboxnet0
# (192.168.56.0/24, host .1).

variable "mirror" {
  type    = string
  default = "http://deb.debian.org/debian"
}

image "nutshell-disk" {
  kind    = "raw"
  version = "2.1.0"
  output  = "nutshell-disk.img"
  size    = "8GiB"

  distribution {
    mirror   = var.mirror
    packages = ["openssh-server", "ca-certificates", "curl", "python3", "lxc", "ifupdown", "isc-dhcp-client"]
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

  provisioner "shell" {
    inline = [
      "printf 'auto lo\\niface lo inet loopback\\n\\nauto eth0\\niface eth0 inet dhcp\\n\\nauto eth1\\niface eth1 inet static\\n  address 192.168.56.10/24\\n' > /etc/network/interfaces",
    ]
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
