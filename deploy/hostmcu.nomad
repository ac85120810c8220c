# Klipper and the Linux host MCU on one Nomad client (the printer's Pi),
# with the docker driver. The client needs:
#
#   client {
#     host_volume "printer_data" { path = "/opt/printer_data" }   # owned by 1000:1000
#   }
#   plugin "docker" {
#     config {
#       volumes { enabled = true }        # the /dev and /dev/pts binds below
#       allow_caps = ["audit_write", "chown", "dac_override", "fowner", "fsetid", "kill",
#                     "mknod", "net_bind_service", "setfcap", "setgid", "setpcap",
#                     "setuid", "sys_chroot", "sys_nice"]   # sys_nice only for -r
#     }
#   }
#
# and the image, built there or pushed to a registry the client can reach:
#   docker buildx build --platform linux/arm64 --target hostmcu -t klipper-hostmcu:latest --load .

job "printer" {
  datacenters = ["dc1"]
  type        = "service"

  constraint {
    attribute = "${attr.unique.hostname}"
    value     = "printer-pi"
  }

  group "printer" {
    volume "printer_data" {
      type      = "host"
      source    = "printer_data"
      read_only = false
    }

    task "hostmcu" {
      driver = "docker"
      user   = "1000:1000"

      lifecycle {
        hook    = "prestart"
        sidecar = true          # keeps running beside klipper
      }

      config {
        image = "klipper-hostmcu:latest"
        args  = ["-I", "/opt/printer_data/run/klipper_host_mcu.tty"]
        # Add "-r" for real time, with cap_add = ["sys_nice"] and
        # ulimit { memlock = "-1:-1" }; see deploy/README.md.

        # Numeric gids of gpio, spi, i2c (getent group gpio spi i2c): the
        # image has no /etc/group.
        group_add = ["997", "999", "998"]

        # One block per node the printer.cfg uses.
        devices = [
          { host_path = "/dev/gpiochip0" },
          # { host_path = "/dev/spidev0.0" },
          # { host_path = "/dev/i2c-1" },
        ]

        # The host's /dev: /dev/ptmx and /dev/pts must be the host's so
        # that klipper (another container) can open the pty. The device
        # cgroup still admits only the devices above.
        mount {
          type   = "bind"
          source = "/dev"
          target = "/dev"
        }

        cap_drop        = ["all"]
        readonly_rootfs = true
        security_opt    = ["no-new-privileges"]
        network_mode    = "none"
      }

      volume_mount {
        volume      = "printer_data"
        destination = "/opt/printer_data"
      }

      resources {
        cpu    = 100
        memory = 32
      }
    }

    task "klipper" {
      driver = "docker"
      user   = "1000:1000"

      config {
        image = "mkuchin/klipper:upstream"
        args = ["-I", "printer_data/run/klipper.tty",
                "-a", "printer_data/run/klipper.sock",
                "printer_data/config/printer.cfg",
                "-l", "printer_data/logs/klippy.log"]
        # Same devpts as hostmcu: the pty link points into it.
        mount {
          type   = "bind"
          source = "/dev/pts"
          target = "/dev/pts"
        }
      }

      volume_mount {
        volume      = "printer_data"
        destination = "/opt/printer_data"
      }

      resources {
        cpu    = 500
        memory = 256
      }
    }
  }
}
