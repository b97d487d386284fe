//go:build zwdebug

package main

// zwdebug poisons and tracks pooled memory, which allocates.
const zwdebugEnabled = true
