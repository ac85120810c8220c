// SPDX-License-Identifier: GPL-2.0
/*
 * A fake I2C adapter for klipper_mcu's kernel tests.
 *
 * The stock i2c-stub answers SMBus requests only, so the plain I2C
 * transfers klipper_mcu makes (I2C_RDWR, read/write on /dev/i2c-N) fail
 * there with EOPNOTSUPP. This adapter takes plain transfers: it serves two
 * 256-byte register files, at 0x50 and 0x51, and NACKs (ENXIO) every other
 * address. A write sets the register pointer from its first byte and
 * stores the rest from there on; a read returns bytes from the pointer on.
 * The pointer wraps at 256. SMBus requests are emulated by the I2C core on
 * top of these transfers, so i2cget/i2cset work too.
 */
#include <linux/i2c.h>
#include <linux/module.h>
#include <linux/mutex.h>

static int bus = 1;
module_param(bus, int, 0444);
MODULE_PARM_DESC(bus, "adapter number (/dev/i2c-BUS)");

#define FIRST_ADDR 0x50
#define DEVICES 2

struct regfile {
	u8 regs[256];
	u8 ptr;
};

static struct regfile files[DEVICES];
static DEFINE_MUTEX(files_lock);

static int regfile_xfer(struct i2c_adapter *adap, struct i2c_msg *msgs, int num)
{
	int i, j;

	mutex_lock(&files_lock);
	for (i = 0; i < num; i++) {
		struct i2c_msg *m = &msgs[i];
		struct regfile *f;

		if (m->addr < FIRST_ADDR || m->addr >= FIRST_ADDR + DEVICES) {
			mutex_unlock(&files_lock);
			return -ENXIO;
		}
		f = &files[m->addr - FIRST_ADDR];
		if (m->flags & I2C_M_RD) {
			for (j = 0; j < m->len; j++)
				m->buf[j] = f->regs[f->ptr++];
		} else if (m->len) {
			f->ptr = m->buf[0];
			for (j = 1; j < m->len; j++)
				f->regs[f->ptr++] = m->buf[j];
		}
	}
	mutex_unlock(&files_lock);
	return num;
}

static u32 regfile_func(struct i2c_adapter *adap)
{
	return I2C_FUNC_I2C | I2C_FUNC_SMBUS_EMUL;
}

static const struct i2c_algorithm regfile_algo = {
	.master_xfer = regfile_xfer,
	.functionality = regfile_func,
};

static struct i2c_adapter regfile_adapter = {
	.owner = THIS_MODULE,
	.class = I2C_CLASS_HWMON,
	.algo = &regfile_algo,
	.name = "klipper test register files",
};

static int __init regfile_init(void)
{
	regfile_adapter.nr = bus;
	return i2c_add_numbered_adapter(&regfile_adapter);
}

static void __exit regfile_exit(void)
{
	i2c_del_adapter(&regfile_adapter);
}

module_init(regfile_init);
module_exit(regfile_exit);
MODULE_DESCRIPTION("Register-file I2C adapter for klipper_mcu's kernel tests");
MODULE_LICENSE("GPL");
