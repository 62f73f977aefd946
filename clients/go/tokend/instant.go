package tokend

import (
	"encoding/json"
	"math"
	"math/big"
	"strconv"
	"time"
)

// instant is a point in time or a duration in seconds, with the arithmetic
// of the Python reference: integers exact (int64 nanoseconds when small, as in
// every real token, a big.Rat otherwise), a number with a fraction or exponent
// a double, sums involving a double rounded as doubles, and comparisons exact.
// NumericDates are any JSON number (RFC 7519 §2), so 1e30 or 1.5 must work.
type instant struct {
	ns     int64
	rat    *big.Rat // non-nil: an exact value in seconds, ns unused
	double bool     // the value is f, a float64 of seconds
	f      float64
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
	return instant{double: true, f: value}
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
	switch {
	case a.double:
		return new(big.Rat).SetFloat64(a.f)
	case a.rat != nil:
		return a.rat
	}
	return big.NewRat(a.ns, 1e9)
}

func (a instant) float() float64 {
	switch {
	case a.double:
		return a.f
	case a.rat != nil:
		value, _ := a.rat.Float64()
		return value
	}
	return float64(a.ns) / 1e9
}

func (a instant) plus(b instant) instant {
	switch {
	case a.double || b.double:
		return instant{double: true, f: a.float() + b.float()}
	case a.rat == nil && b.rat == nil:
		return instant{ns: a.ns + b.ns}
	}
	return instant{rat: new(big.Rat).Add(a.big(), b.big())}
}

func (a instant) minus(b instant) instant {
	switch {
	case a.double || b.double:
		return instant{double: true, f: a.float() - b.float()}
	case a.rat == nil && b.rat == nil:
		return instant{ns: a.ns - b.ns}
	}
	return instant{rat: new(big.Rat).Sub(a.big(), b.big())}
}

// cmp is -1, 0 or 1 as a is less than, equal to or greater than b, exactly
// (as Python compares an int with a float).
func (a instant) cmp(b instant) int {
	if bothDouble := a.double && b.double; bothDouble || (a.double || b.double) &&
		(math.IsInf(a.float(), 0) || math.IsInf(b.float(), 0)) {
		// Doubles compare as doubles; an infinite sum (a huge integer plus a
		// double) has no exact value to compare.
		a, b := instant{f: a.float()}, instant{f: b.float()}
		switch {
		case a.f < b.f:
			return -1
		case a.f > b.f:
			return 1
		}
		return 0
	}
	if a.rat == nil && b.rat == nil && !a.double && !b.double {
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
	if a.rat == nil && !a.double {
		return time.Unix(0, a.ns).UTC()
	}
	seconds := a.float()
	const limit = 1 << 62 / 1e9 * 1e9 // far beyond any clock, well inside int64
	seconds = math.Max(-limit, math.Min(limit, seconds))
	whole, fraction := math.Modf(seconds)
	return time.Unix(int64(whole), int64(fraction*1e9)).UTC()
}
