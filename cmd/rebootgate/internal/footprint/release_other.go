//go:build !linux

package footprint

import "runtime/debug"

// Release returns freed heap memory to the operating system; unmapping the
// executable's pages is done on Linux only.
func Release() (int64, error) {
	debug.FreeOSMemory()
	return 0, nil
}
