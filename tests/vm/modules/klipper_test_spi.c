// SPDX-License-Identifier: GPL-2.0
/*
 * A fake SPI controller for klipper_mcu's kernel tests: bus 0 with one
 * device, chip select 0, bound to spidev (/dev/spidev0.0). Each transfer
 * answers the bitwise inverse of what it was sent, so a test can tell the
 * kernel's answer from an echo. The last message (mode, speed and every
 * byte sent) is readable from the platform device's `last` attribute
 * (/sys/devices/platform/klipper-test-spi/last): "MODE SPEED_HZ HEXBYTES".
 */
#include <linux/module.h>
#include <linux/platform_device.h>
#include <linux/slab.h>
#include <linux/spi/spi.h>
#include <linux/spinlock.h>

#include "klipper_test_record.h"

#define LAST_MAX 256

static struct platform_device *pdev;
static struct spi_controller *ctlr;
static DEFINE_SPINLOCK(last_lock);
static u8 last_tx[LAST_MAX];
static unsigned int last_len;
static u32 last_mode, last_speed;

static int fake_prepare_message(struct spi_controller *c, struct spi_message *msg)
{
	spin_lock(&last_lock);
	last_len = 0;
	last_mode = msg->spi->mode;
	spin_unlock(&last_lock);
	return 0;
}

static int fake_transfer_one(struct spi_controller *c, struct spi_device *spi,
			     struct spi_transfer *t)
{
	const u8 *tx = t->tx_buf;
	u8 *rx = t->rx_buf;
	unsigned int i;

	spin_lock(&last_lock);
	last_speed = t->speed_hz;
	for (i = 0; i < t->len; i++) {
		u8 b = tx ? tx[i] : 0;

		if (last_len < LAST_MAX)
			last_tx[last_len++] = b;
		if (rx)
			rx[i] = ~b;
	}
	spin_unlock(&last_lock);
	return 0;
}

static ssize_t last_show(struct device *dev, struct device_attribute *attr, char *buf)
{
	unsigned int i;
	int n;

	spin_lock(&last_lock);
	n = sysfs_emit(buf, "%u %u ", last_mode, last_speed);
	for (i = 0; i < last_len; i++)
		n += sysfs_emit_at(buf, n, "%02x", last_tx[i]);
	spin_unlock(&last_lock);
	n += sysfs_emit_at(buf, n, "\n");
	return n;
}
static DEVICE_ATTR_RO(last);

static int __init fake_spi_init(void)
{
	struct spi_device *spi;
	int ret;

	pdev = record_device_add("klipper-test-spi", &dev_attr_last);
	if (IS_ERR(pdev))
		return PTR_ERR(pdev);
	ctlr = spi_alloc_master(&pdev->dev, 0);
	if (!ctlr) {
		ret = -ENOMEM;
		goto remove_device;
	}
	ctlr->bus_num = 0;
	ctlr->num_chipselect = 1;
	ctlr->mode_bits = SPI_CPOL | SPI_CPHA | SPI_CS_HIGH;
	ctlr->max_speed_hz = 50000000;
	ctlr->prepare_message = fake_prepare_message;
	ctlr->transfer_one = fake_transfer_one;
	ret = spi_register_controller(ctlr);
	if (ret) {
		spi_controller_put(ctlr);
		goto remove_device;
	}
	spi = spi_alloc_device(ctlr);
	if (!spi) {
		ret = -ENOMEM;
		goto unregister_ctlr;
	}
	spi->chip_select = 0;
	spi->max_speed_hz = 10000000;
	strscpy(spi->modalias, "klipper-test", sizeof(spi->modalias));
	/* Bind spidev by name: it matches no id of ours. Freed by the core. */
	spi->driver_override = kstrdup("spidev", GFP_KERNEL);
	ret = spi_add_device(spi);
	if (ret) {
		spi_dev_put(spi);
		goto unregister_ctlr;
	}
	return 0;
unregister_ctlr:
	spi_unregister_controller(ctlr);
remove_device:
	record_device_del(pdev, &dev_attr_last);
	return ret;
}

static void __exit fake_spi_exit(void)
{
	spi_unregister_controller(ctlr);
	record_device_del(pdev, &dev_attr_last);
}

module_init(fake_spi_init);
module_exit(fake_spi_exit);
MODULE_DESCRIPTION("Fake SPI controller for klipper_mcu's kernel tests");
MODULE_LICENSE("GPL");
