package tokend

import "sort"

// RememberedHeaders lists the header segments v remembers, whatever key set
// they belong to (tests of the header memory only).
func RememberedHeaders(v *Verifier) []string {
	remembered := v.headers.current.Load()
	if remembered == nil {
		return nil
	}
	headers := make([]string, 0, len(remembered.headers))
	for header := range remembered.headers {
		headers = append(headers, header)
	}
	sort.Strings(headers)
	return headers
}

// MaxRememberedHeaders is maxRememberedHeaders for the external tests.
const MaxRememberedHeaders = maxRememberedHeaders
