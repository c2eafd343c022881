# ConPaaS on Raspberry Pi: the SD-card image of an OpenStack compute node
# (nova-compute + cinder-volume on LXC) for a Raspberry Pi 2 or 3 Model B.
# The controller (Keystone, Glance, Nova API, ConPaaS director) runs in the
# RPi backend VM elsewhere on the 172.16.0.0/24 LAN.
#
#   cpsimage build -var controller_ip=172.16.0.1 hcl/templates/examples/rpi-sdcard.pkr.hcl
#   cpsimage flash conpaas-rpi.img /dev/sdX            # only the data is written
#   cpsimage sdcard resize conpaas-rpi.img --size 64GB  # for a bigger card, before flashing

variable "controller_ip" {
  type        = string
  default     = "172.16.0.1"
  description = "Address of the OpenStack controller (RPi backend VM) on the Pi LAN"
  validation {
    condition     = can(regex("^172\\.16\\.0\\.([1-9]|[1-9][0-9]|1[0-9][0-9]|2[0-4][0-9]|25[0-4])$", var.controller_ip))
    error_message = "The controller must be on the Raspberry Pi LAN, 172.16.0.0/24."
  }
}

variable "node_ip" {
  type    = string
  default = "172.16.0.11"
}

variable "arch" {
  type        = string
  default     = "arm64" # Pi 3 and Pi 2 v1.2; "armhf" for every Pi 2
  description = "Debian architecture of the root filesystem"
}

image "rpi" {
  kind    = "sdcard"
  arch    = var.arch
  version = "2.1.0"
  output  = "conpaas-rpi.img"

  # Fits the majority of 32 GB cards; every partition starts on the 4 MiB
  # erase block. The Pi firmware boots only from an MBR table.
  size            = 31998345216
  alignment       = "4MiB"
  partition_table = "mbr"

  distribution {
    suite      = "bookworm"
    mirror     = "http://deb.debian.org/debian"
    components = ["main", "non-free-firmware"] # raspi-firmware is in non-free-firmware
    variant    = "important"
    packages = [
      "nova-compute-lxc", "cinder-volume", "lxc", "bridge-utils", "lvm2", "thin-provisioning-tools",
      "tgt", "open-iscsi", "openssh-server", "ifupdown", "isc-dhcp-client", "ca-certificates",
      "systemd-timesyncd",
    ]
  }

  partition "boot" {
    fs    = "vfat"
    label = "RASPIFIRM"
    size  = "512MiB"
    mount = "/boot/firmware"
  }
  partition "root" {
    fs    = "ext4"
    label = "RASPIROOT"
    size  = "*" # the rest of the card
    mount = "/"
  }
  partition "swap" {
    fs    = "swap"
    label = "swap"
    size  = "1GiB" # near the end; `cpsimage sdcard resize` moves it to the end of a bigger card
  }

  bootloader {
    type    = "raspi"
    cmdline = "cgroup_enable=memory swapaccount=1"
  }

  environment = {
    CONTROLLER_IP = var.controller_ip
    NODE_IP       = var.node_ip
  }

  provisioner "shell" {
    script = "${path.root}/../../../scripts/sdcard/compute-node.sh"
  }

  checksums = ["md5", "sha256"]
}
