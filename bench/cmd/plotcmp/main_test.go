package main

import (
	"os"
	"path/filepath"
	"testing"
)

func TestPointsFromSummary(t *testing.T) {
	pts := points(result{Requests: 1e6, P50: 10, P90: 20, P99: 40, P999: 80, P9999: 160, Max: 500})
	if len(pts) != 6 || pts[0] != (point{50, 10}) || pts[5].us != 500 || pts[5].pct <= 99.99 || pts[5].pct >= 100 {
		t.Fatalf("points = %v", pts)
	}
	// A short run: the max still comes after p99.99.
	if pts := points(result{Requests: 100, P50: 1, Max: 2}); len(pts) != 2 || pts[1].pct <= 99.99 {
		t.Fatalf("points = %v", pts)
	}
}

func TestDrawFile(t *testing.T) {
	dir := t.TempDir()
	in := filepath.Join(dir, "a.json")
	os.WriteFile(in, []byte(`{"requests":1000,"p50_us":10,"p90_us":20,"p99_us":40,"p999_us":80,"p9999_us":160,"max_us":500}`), 0o644)
	s, err := load("a", in)
	if err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(dir, "c.svg")
	if err := draw1(out, "t", []series{s, {name: "empty"}}); err != nil {
		t.Fatal(err)
	}
	if fi, err := os.Stat(out); err != nil || fi.Size() == 0 {
		t.Fatalf("no chart: %v", err)
	}
	if err := draw1(filepath.Join(dir, "c.txt"), "t", []series{s}); err == nil {
		t.Error("a .txt chart was accepted")
	}
}
