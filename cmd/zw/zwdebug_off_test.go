//go:build !zwdebug

package main

const zwdebugEnabled = false
