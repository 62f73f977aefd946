package tokend

// Strict decoding written here rather than taken from encoding/base64 and
// encoding/json: both are lenient where a token verifier must not be (base64
// skips CR/LF even in Strict mode; json keeps the last of duplicate members and
// replaces invalid UTF-8 and lone surrogates with U+FFFD).

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"math"
	"strconv"
	"unicode/utf8"
)

// b64urlValue maps a base64url character to its value, or 0xFF.
var b64urlValue = func() [256]byte {
	var table [256]byte
	for i := range table {
		table[i] = 0xFF
	}
	const alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
	for i := 0; i < len(alphabet); i++ {
		table[alphabet[i]] = byte(i)
	}
	return table
}()

var errBase64 = errors.New("not canonical unpadded base64url")

// decodeB64URL decodes canonical unpadded base64url only (RFC 7515 §2, RFC 4648
// §5): no padding, no "+" or "/", no whitespace, no length of 1 mod 4, and zero
// unused trailing bits (RFC 4648 §3.5), so each byte string has one encoding.
func decodeB64URL(text string) ([]byte, error) {
	if len(text)%4 == 1 {
		return nil, errBase64
	}
	out := make([]byte, 0, len(text)*3/4)
	var acc uint32
	bits := 0
	for i := 0; i < len(text); i++ {
		v := b64urlValue[text[i]]
		if v == 0xFF {
			return nil, errBase64
		}
		acc = acc<<6 | uint32(v)
		bits += 6
		if bits >= 8 {
			bits -= 8
			out = append(out, byte(acc>>bits))
		}
	}
	if acc&(1<<bits-1) != 0 {
		return nil, errBase64
	}
	return out, nil
}

// maxJSONDepth bounds the arrays and objects open at once, the outer one
// included: the same fixed limit in every language's verifier (RFC 8259 §9
// lets parsers limit depth).
const maxJSONDepth = 64

// maxIntDigits bounds integer literals, as the Python verifier does:
// NumericDates need 10-11 digits.
const maxIntDigits = 64

var errJSON = errors.New("not strict JSON")

// parseStrictJSON parses one JSON value strictly: UTF-8 without BOM, no
// duplicate member names at any depth (RFC 7515 §4, RFC 7519 §4), no lone
// surrogate escapes (RFC 7493 §2.1), integers of at most 64 digits, finite
// numbers only. Whitespace around the value is allowed (RFC 8259 §2). Numbers
// are returned as json.Number.
func parseStrictJSON(data []byte) (any, error) {
	// encoding/json would replace invalid UTF-8 with U+FFFD without a word.
	if !utf8.Valid(data) || bytes.HasPrefix(data, []byte("\xef\xbb\xbf")) {
		return nil, errJSON
	}
	if bytes.IndexByte(data, '\\') >= 0 && hasLoneSurrogate(data) {
		return nil, errJSON
	}
	decoder := json.NewDecoder(bytes.NewReader(data))
	decoder.UseNumber()
	value, err := readValue(decoder, 0)
	if err != nil {
		return nil, errJSON
	}
	if _, err := decoder.Token(); err != io.EOF {
		return nil, errJSON // something after the value
	}
	return value, nil
}

func readValue(decoder *json.Decoder, depth int) (any, error) {
	token, err := decoder.Token()
	if err != nil {
		return nil, err
	}
	switch t := token.(type) {
	case json.Delim:
		if depth >= maxJSONDepth {
			return nil, errJSON
		}
		if t == '{' {
			return readObject(decoder, depth+1)
		}
		if t == '[' {
			return readArray(decoder, depth+1)
		}
		return nil, errJSON
	case json.Number:
		if !numberAllowed(t) {
			return nil, errJSON
		}
		return t, nil
	default: // string, bool, nil
		return t, nil
	}
}

func readObject(decoder *json.Decoder, depth int) (map[string]any, error) {
	object := map[string]any{}
	for decoder.More() {
		token, err := decoder.Token()
		if err != nil {
			return nil, err
		}
		name, ok := token.(string)
		if !ok {
			return nil, errJSON
		}
		if _, seen := object[name]; seen {
			return nil, errJSON // RFC 7515 §4 / RFC 7519 §4: names MUST be unique
		}
		if object[name], err = readValue(decoder, depth); err != nil {
			return nil, err
		}
	}
	if _, err := decoder.Token(); err != nil { // the closing brace
		return nil, err
	}
	return object, nil
}

func readArray(decoder *json.Decoder, depth int) ([]any, error) {
	array := []any{}
	for decoder.More() {
		value, err := readValue(decoder, depth)
		if err != nil {
			return nil, err
		}
		array = append(array, value)
	}
	if _, err := decoder.Token(); err != nil { // the closing bracket
		return nil, err
	}
	return array, nil
}

// numberAllowed refuses integers over maxIntDigits digits and numbers that
// overflow a float64 (Python's float() would make them infinite).
func numberAllowed(number json.Number) bool {
	text := string(number)
	if isIntegerLiteral(text) {
		return len(text) <= maxIntDigits
	}
	value, err := strconv.ParseFloat(text, 64)
	// Underflow to zero is a range error too, yet finite, as in Python.
	if err != nil && !errors.Is(err, strconv.ErrRange) {
		return false
	}
	return !math.IsInf(value, 0)
}

func isIntegerLiteral(text string) bool {
	for i := 0; i < len(text); i++ {
		if c := text[i]; (c < '0' || c > '9') && !(i == 0 && c == '-') {
			return false
		}
	}
	return true
}

// hasLoneSurrogate reports a \uD800-\uDFFF escape that is not a high surrogate
// directly followed by a low one. Backslashes only occur inside strings in
// valid JSON, so the whole document can be scanned.
func hasLoneSurrogate(data []byte) bool {
	pendingHigh := false
	for i := 0; i < len(data); i++ {
		if data[i] != '\\' {
			if pendingHigh {
				return true
			}
			continue
		}
		if i+1 >= len(data) {
			return false // a syntax error the decoder reports
		}
		if data[i+1] != 'u' || i+5 >= len(data) {
			if pendingHigh {
				return true
			}
			i++ // skip the escaped character (it may be a backslash)
			continue
		}
		code, err := strconv.ParseUint(string(data[i+2:i+6]), 16, 16)
		if err != nil {
			return false // a syntax error the decoder reports
		}
		switch {
		case code >= 0xD800 && code <= 0xDBFF:
			if pendingHigh {
				return true
			}
			pendingHigh = true
		case code >= 0xDC00 && code <= 0xDFFF:
			if !pendingHigh {
				return true
			}
			pendingHigh = false
		default:
			if pendingHigh {
				return true
			}
		}
		i += 5
	}
	return pendingHigh
}
