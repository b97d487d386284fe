package pool

// DebugForced reports whether the zwdebug build tag is set, for tests that
// only hold without debug mode.
func DebugForced() bool { return forceDebug }
