package tui

import (
	"fmt"
	"strconv"
	"time"
)

// age is how long ago t was, as kubectl prints it: 12s, 5m, 3h, 2d.
func age(now, t time.Time) string {
	if t.IsZero() {
		return "-"
	}
	d := now.Sub(t)
	switch {
	case d < 0:
		return "0s"
	case d < time.Minute:
		return strconv.Itoa(int(d.Seconds())) + "s"
	case d < time.Hour:
		return strconv.Itoa(int(d.Minutes())) + "m"
	case d < 48*time.Hour:
		return strconv.Itoa(int(d.Hours())) + "h"
	}
	return strconv.Itoa(int(d.Hours()/24)) + "d"
}

// cpu prints millicores: 250m, 2, 1.5.
func cpu(m int64) string {
	switch {
	case m%1000 == 0:
		return strconv.FormatInt(m/1000, 10)
	case m < 1000:
		return strconv.FormatInt(m, 10) + "m"
	}
	return strconv.FormatFloat(float64(m)/1000, 'f', 1, 64)
}

// binSize prints a size in binary units: 512Mi, 1.9Gi.
func binSize(b int64) string {
	units := []string{"", "Ki", "Mi", "Gi", "Ti"}
	v := float64(b)
	i := 0
	for v >= 1024 && i < len(units)-1 {
		v /= 1024
		i++
	}
	if v == float64(int64(v)) || v >= 100 {
		return fmt.Sprintf("%.0f%s", v, units[i])
	}
	return fmt.Sprintf("%.1f%s", v, units[i])
}

// dur prints a duration shortly: 830µs, 12ms, 1.2s.
func dur(d time.Duration) string {
	switch {
	case d <= 0:
		return "0s"
	case d < time.Millisecond:
		return strconv.FormatInt(d.Microseconds(), 10) + "µs"
	case d < time.Second:
		return strconv.FormatInt(d.Milliseconds(), 10) + "ms"
	case d < time.Minute:
		return strconv.FormatFloat(d.Seconds(), 'f', 1, 64) + "s"
	}
	return d.Round(time.Second).String()
}

// usage prints requested/allocatable with a unit printer.
func usage(r Resource, unit func(int64) string) string {
	if r.Allocatable == 0 {
		return "-"
	}
	return unit(r.Requested) + "/" + unit(r.Allocatable)
}
