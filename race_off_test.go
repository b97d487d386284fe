//go:build !race

package zerowire

const raceEnabled = false
