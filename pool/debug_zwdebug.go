//go:build zwdebug

package pool

func init() { forceDebug = true }
