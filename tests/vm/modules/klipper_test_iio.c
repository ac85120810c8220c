// SPDX-License-Identifier: GPL-2.0
/*
 * A fake IIO ADC for klipper_mcu's kernel tests (Debian builds no
 * iio_dummy): two voltage channels, in_voltage0_raw and in_voltage1_raw,
 * whose readings are the module parameter `raw`
 * (/sys/module/klipper_test_iio/parameters/raw, "V0,V1"), writable at run
 * time to play the signal.
 */
#include <linux/iio/iio.h>
#include <linux/module.h>
#include <linux/platform_device.h>

static int raw[2] = { 1000, 3000 };
module_param_array(raw, int, NULL, 0644);
MODULE_PARM_DESC(raw, "readings of channels 0 and 1");

static struct platform_device *pdev;
static struct iio_dev *indio;

#define CHANNEL(n) {						\
	.type = IIO_VOLTAGE,					\
	.indexed = 1,						\
	.channel = (n),						\
	.info_mask_separate = BIT(IIO_CHAN_INFO_RAW),		\
}

static const struct iio_chan_spec channels[] = { CHANNEL(0), CHANNEL(1) };

static int fake_read_raw(struct iio_dev *dev, struct iio_chan_spec const *chan,
			 int *val, int *val2, long mask)
{
	if (mask != IIO_CHAN_INFO_RAW)
		return -EINVAL;
	*val = READ_ONCE(raw[chan->channel]);
	return IIO_VAL_INT;
}

static const struct iio_info fake_info = {
	.read_raw = fake_read_raw,
};

static int __init fake_iio_init(void)
{
	int ret;

	pdev = platform_device_register_simple("klipper-test-iio", -1, NULL, 0);
	if (IS_ERR(pdev))
		return PTR_ERR(pdev);
	indio = iio_device_alloc(&pdev->dev, 0);
	if (!indio) {
		ret = -ENOMEM;
		goto unregister;
	}
	indio->name = "klipper-test-adc";
	indio->info = &fake_info;
	indio->channels = channels;
	indio->num_channels = ARRAY_SIZE(channels);
	indio->modes = INDIO_DIRECT_MODE;
	ret = iio_device_register(indio);
	if (ret)
		goto free;
	return 0;
free:
	iio_device_free(indio);
unregister:
	platform_device_unregister(pdev);
	return ret;
}

static void __exit fake_iio_exit(void)
{
	iio_device_unregister(indio);
	iio_device_free(indio);
	platform_device_unregister(pdev);
}

module_init(fake_iio_init);
module_exit(fake_iio_exit);
MODULE_DESCRIPTION("Fake IIO ADC for klipper_mcu's kernel tests");
MODULE_LICENSE("GPL");
MODULE_IMPORT_NS(IIO);
