/* SPDX-License-Identifier: GPL-2.0 */
/*
 * The platform device a fake controller of the kernel tests hangs from,
 * with the one sysfs attribute through which a test reads what the driver
 * was asked to do (its record: `applied` of klipper_test_pwm.c, `last` of
 * klipper_test_spi.c). Shared so that both set it up and tear it down
 * alike.
 */
#ifndef KLIPPER_TEST_RECORD_H
#define KLIPPER_TEST_RECORD_H

#include <linux/err.h>
#include <linux/platform_device.h>

/* Register the platform device `name` with its record attribute `attr`. */
static inline struct platform_device *
record_device_add(const char *name, const struct device_attribute *attr)
{
	struct platform_device *p;
	int ret;

	p = platform_device_register_simple(name, -1, NULL, 0);
	if (IS_ERR(p))
		return p;
	ret = device_create_file(&p->dev, attr);
	if (ret) {
		platform_device_unregister(p);
		return ERR_PTR(ret);
	}
	return p;
}

/* Undo record_device_add(). */
static inline void record_device_del(struct platform_device *p,
				     const struct device_attribute *attr)
{
	device_remove_file(&p->dev, attr);
	platform_device_unregister(p);
}

#endif
