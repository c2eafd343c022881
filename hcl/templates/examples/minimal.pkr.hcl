# The smallest bootable conpaas.img: what `make test` builds and boots in QEMU.
# Same builder, layout and payload as the default template; only the package
# set is cut to the kernel and systemd.

variable "mirror" {
  type    = string
  default = "http://deb.debian.org/debian"
}

image "conpaas-minimal" {
  kind    = "raw"
  version = "test"
  output  = "conpaas-minimal.img"
  size    = "1536MiB"

  distribution {
    suite    = "bookworm"
    mirror   = var.mirror
    variant  = "minbase"
    packages = []
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
    label = "conpaas-root"
    mount = "/"
  }

  bootloader {
    type    = "grub"
    bios    = true
    uefi    = true
    cmdline = "console=ttyS0,115200n8"
  }
}
