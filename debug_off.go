//go:build !zwdebug

package zerowire

const debugPoison = false
