// SPDX-License-Identifier: GPL-2.0
/*
 * A fake PWM controller for klipper_mcu's kernel tests: one chip with two
 * channels that accepts any state. What the driver was last asked to apply
 * is readable, one line a channel ("period duty_cycle enabled"), from the
 * platform device's `applied` attribute
 * (/sys/devices/platform/klipper-test-pwm/applied), so a test can check
 * what reached the driver and not only what the PWM core's sysfs says.
 */
#include <linux/module.h>
#include <linux/mutex.h>
#include <linux/platform_device.h>
#include <linux/pwm.h>

#include "klipper_test_record.h"

#define CHANNELS 2

static struct platform_device *pdev;
static struct pwm_chip chip;
static struct pwm_state applied[CHANNELS];
static DEFINE_MUTEX(applied_lock);

static int fake_apply(struct pwm_chip *c, struct pwm_device *pwm,
		      const struct pwm_state *state)
{
	mutex_lock(&applied_lock);
	applied[pwm->hwpwm] = *state;
	mutex_unlock(&applied_lock);
	return 0;
}

static const struct pwm_ops fake_ops = {
	.apply = fake_apply,
	.owner = THIS_MODULE,
};

static ssize_t applied_show(struct device *dev, struct device_attribute *attr,
			    char *buf)
{
	int i, n = 0;

	mutex_lock(&applied_lock);
	for (i = 0; i < CHANNELS; i++)
		n += sysfs_emit_at(buf, n, "%llu %llu %d\n", applied[i].period,
				   applied[i].duty_cycle, applied[i].enabled);
	mutex_unlock(&applied_lock);
	return n;
}
static DEVICE_ATTR_RO(applied);

static int __init fake_pwm_init(void)
{
	int ret;

	pdev = record_device_add("klipper-test-pwm", &dev_attr_applied);
	if (IS_ERR(pdev))
		return PTR_ERR(pdev);
	chip.dev = &pdev->dev;
	chip.ops = &fake_ops;
	chip.npwm = CHANNELS;
	ret = pwmchip_add(&chip);
	if (ret)
		record_device_del(pdev, &dev_attr_applied);
	return ret;
}

static void __exit fake_pwm_exit(void)
{
	pwmchip_remove(&chip);
	record_device_del(pdev, &dev_attr_applied);
}

module_init(fake_pwm_init);
module_exit(fake_pwm_exit);
MODULE_DESCRIPTION("Fake PWM controller for klipper_mcu's kernel tests");
MODULE_LICENSE("GPL");
