package tokend

import (
	"encoding/json"
	"math"
	"math/big"
	"strconv"
	"time"
)

// instant is a point in time or a duration in seconds, exact: int64
// nanoseconds when small (every real token), a big.Rat otherwise. NumericDates
// are any JSON number (RFC 7519 §2), so 1e30 or 1.5 must compare correctly.
type instant struct {
	ns  int64
	rat *big.Rat // non-nil: the value in seconds, ns unused
}

// smallSeconds bounds the seconds held as int64 nanoseconds (year 2242), so
// sums of a few of them cannot overflow.
const smallSeconds = 1 << 33

func instantOfNumber(number json.Number) instant {
	text := string(number)
	if isIntegerLiteral(text) {
		if seconds, err := strconv.ParseInt(text, 10, 64); err == nil && seconds > -smallSeconds && seconds < smallSeconds {
			return instant{ns: seconds * 1e9}
		}
		rat, _ := new(big.Rat).SetString(text) // at most 64 digits: parseStrictJSON checked
		return instant{rat: rat}
	}
	// A fraction or exponent: a float, as the Python reference reads it.
	value, _ := strconv.ParseFloat(text, 64)
	return instant{rat: new(big.Rat).SetFloat64(value)}
}

func instantOfTime(t time.Time) instant {
	if seconds := t.Unix(); seconds > -smallSeconds && seconds < smallSeconds {
		return instant{ns: t.UnixNano()}
	}
	rat := new(big.Rat).SetFrac(big.NewInt(t.Unix()), big.NewInt(1))
	return instant{rat: rat.Add(rat, big.NewRat(int64(t.Nanosecond()), 1e9))}
}

func instantOfDuration(d time.Duration) instant { return instant{ns: int64(d)} }

func (a instant) big() *big.Rat {
	if a.rat != nil {
		return a.rat
	}
	return big.NewRat(a.ns, 1e9)
}

func (a instant) plus(b instant) instant {
	if a.rat == nil && b.rat == nil {
		return instant{ns: a.ns + b.ns}
	}
	return instant{rat: new(big.Rat).Add(a.big(), b.big())}
}

func (a instant) minus(b instant) instant {
	if a.rat == nil && b.rat == nil {
		return instant{ns: a.ns - b.ns}
	}
	return instant{rat: new(big.Rat).Sub(a.big(), b.big())}
}

// cmp is -1, 0 or 1 as a is less than, equal to or greater than b.
func (a instant) cmp(b instant) int {
	if a.rat == nil && b.rat == nil {
		switch {
		case a.ns < b.ns:
			return -1
		case a.ns > b.ns:
			return 1
		}
		return 0
	}
	return a.big().Cmp(b.big())
}

// time converts to a time.Time, clamped to what time.Time can hold.
func (a instant) time() time.Time {
	if a.rat == nil {
		return time.Unix(0, a.ns).UTC()
	}
	seconds, _ := a.rat.Float64()
	const limit = 1 << 62 / 1e9 * 1e9 // far beyond any clock, well inside int64
	seconds = math.Max(-limit, math.Min(limit, seconds))
	whole, fraction := math.Modf(seconds)
	return time.Unix(int64(whole), int64(fraction*1e9)).UTC()
}
