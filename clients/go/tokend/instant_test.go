package tokend

import (
	"encoding/json"
	"strings"
	"testing"
	"time"
)

func TestInstantArithmeticFollowsTheReference(t *testing.T) {
	now := instantOfTime(time.Unix(1767225600, 0))
	leeway := instantOfDuration(30 * time.Second)
	huge := instantOfNumber(json.Number("1" + strings.Repeat("0", 60)))
	cases := []struct {
		name string
		got  int
		want int
	}{
		// A double sum rounds: 1767225570.00000000001 + 30 is exactly 1767225600.
		{"double sum rounds", now.cmp(instantOfNumber("1767225570.00000000001").plus(leeway)), 0},
		{"integers exact", now.cmp(instantOfNumber("1767225570").plus(leeway)), 0},
		{"huge integer", huge.cmp(now), 1},
		{"huge integer plus a double", huge.plus(instantOfNumber("0.5")).cmp(now), 1},
		{"huge exponent", instantOfNumber("1e300").cmp(now), 1},
		{"negative", instantOfNumber("-5").cmp(now), -1},
		{"integer against double exactly", instantOfNumber("1767225600").cmp(instantOfNumber("1767225600.0")), 0},
	}
	for _, c := range cases {
		if c.got != c.want {
			t.Errorf("%s: cmp = %d, want %d", c.name, c.got, c.want)
		}
	}
	// Beyond float64: an infinite double sum must still compare, not panic.
	beyond := instantOfNumber(json.Number("9" + strings.Repeat("9", 63)))
	_ = beyond.big()
	inf := instant{double: true, f: beyond.float() * 1e300}
	if inf.cmp(now) != 1 || now.cmp(inf) != -1 {
		t.Error("infinity compares wrong")
	}
}
