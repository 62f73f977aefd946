package tokend

// Strict decoding written here rather than taken from encoding/base64 and
// encoding/json: both are lenient where a token verifier must not be (base64
// skips CR/LF even in Strict mode; json keeps the last of duplicate members and
// replaces invalid UTF-8 and lone surrogates with U+FFFD).

import (
	"bytes"
	"encoding/json"
	"errors"
	"math"
	"strconv"
	"unicode/utf16"
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
// are returned as json.Number. One pass both checks and builds the value: it
// runs on every token's header and payload, and json.Decoder's token walk
// (the reference the fuzz tests compare with) cost a fifth of a verification.
func parseStrictJSON(data []byte) (any, error) {
	// encoding/json would replace invalid UTF-8 with U+FFFD without a word.
	if !utf8.Valid(data) || bytes.HasPrefix(data, []byte("\xef\xbb\xbf")) {
		return nil, errJSON
	}
	p := jsonParser{data: data}
	p.skipSpace()
	value, err := p.value(0)
	if err != nil {
		return nil, errJSON
	}
	if p.skipSpace(); p.pos != len(data) {
		return nil, errJSON // something after the value
	}
	return value, nil
}

// jsonParser is a recursive-descent parser of RFC 8259 over valid UTF-8.
type jsonParser struct {
	data []byte
	pos  int
}

// peek is the next byte, or 0 at the end (never valid where a byte is expected).
func (p *jsonParser) peek() byte {
	if p.pos < len(p.data) {
		return p.data[p.pos]
	}
	return 0
}

// skipSpace skips the four whitespace characters of RFC 8259 §2.
func (p *jsonParser) skipSpace() {
	for p.pos < len(p.data) {
		switch p.data[p.pos] {
		case ' ', '\t', '\n', '\r':
			p.pos++
		default:
			return
		}
	}
}

// value parses the value at pos; depth counts the arrays and objects around it.
func (p *jsonParser) value(depth int) (any, error) {
	switch c := p.peek(); {
	case c == '{' || c == '[':
		if depth >= maxJSONDepth {
			return nil, errJSON
		}
		if c == '{' {
			return p.object(depth + 1)
		}
		return p.array(depth + 1)
	case c == '"':
		return p.string()
	case c == '-' || c >= '0' && c <= '9':
		return p.number()
	case c == 't':
		return p.literal("true", true)
	case c == 'f':
		return p.literal("false", false)
	case c == 'n':
		return p.literal("null", nil)
	}
	return nil, errJSON
}

func (p *jsonParser) literal(text string, value any) (any, error) {
	if !bytes.HasPrefix(p.data[p.pos:], []byte(text)) {
		return nil, errJSON
	}
	p.pos += len(text)
	return value, nil
}

func (p *jsonParser) object(depth int) (map[string]any, error) {
	p.pos++ // the opening brace
	object := map[string]any{}
	if p.skipSpace(); p.peek() == '}' {
		p.pos++
		return object, nil
	}
	for {
		if p.peek() != '"' {
			return nil, errJSON
		}
		name, err := p.string()
		if err != nil {
			return nil, err
		}
		if _, seen := object[name]; seen {
			return nil, errJSON // RFC 7515 §4 / RFC 7519 §4: names MUST be unique
		}
		if p.skipSpace(); p.peek() != ':' {
			return nil, errJSON
		}
		p.pos++
		p.skipSpace()
		if object[name], err = p.value(depth); err != nil {
			return nil, err
		}
		p.skipSpace()
		switch p.peek() {
		case ',':
			p.pos++
			p.skipSpace()
		case '}':
			p.pos++
			return object, nil
		default:
			return nil, errJSON
		}
	}
}

func (p *jsonParser) array(depth int) ([]any, error) {
	p.pos++ // the opening bracket
	array := []any{}
	if p.skipSpace(); p.peek() == ']' {
		p.pos++
		return array, nil
	}
	for {
		value, err := p.value(depth)
		if err != nil {
			return nil, err
		}
		array = append(array, value)
		p.skipSpace()
		switch p.peek() {
		case ',':
			p.pos++
			p.skipSpace()
		case ']':
			p.pos++
			return array, nil
		default:
			return nil, errJSON
		}
	}
}

// number reads RFC 8259 §6: -? (0 | [1-9][0-9]*) (. [0-9]+)? ([eE] [+-]? [0-9]+)?
func (p *jsonParser) number() (any, error) {
	start := p.pos
	if p.peek() == '-' {
		p.pos++
	}
	switch c := p.peek(); {
	case c == '0':
		p.pos++
	case c >= '1' && c <= '9':
		p.digits()
	default:
		return nil, errJSON
	}
	if p.peek() == '.' {
		p.pos++
		if p.digits() == 0 {
			return nil, errJSON
		}
	}
	if c := p.peek(); c == 'e' || c == 'E' {
		p.pos++
		if c := p.peek(); c == '+' || c == '-' {
			p.pos++
		}
		if p.digits() == 0 {
			return nil, errJSON
		}
	}
	number := json.Number(p.data[start:p.pos])
	if !numberAllowed(number) {
		return nil, errJSON
	}
	return number, nil
}

func (p *jsonParser) digits() int {
	start := p.pos
	for p.pos < len(p.data) && p.data[p.pos] >= '0' && p.data[p.pos] <= '9' {
		p.pos++
	}
	return p.pos - start
}

// string reads the string at pos (RFC 8259 §7); the input is valid UTF-8 already.
func (p *jsonParser) string() (string, error) {
	p.pos++ // the opening quote
	start := p.pos
	for p.pos < len(p.data) {
		switch c := p.data[p.pos]; {
		case c == '"':
			p.pos++
			return string(p.data[start : p.pos-1]), nil
		case c == '\\':
			return p.escapedString(start)
		case c < 0x20:
			return "", errJSON // control characters must be escaped
		}
		p.pos++
	}
	return "", errJSON
}

// escapedString finishes a string from its first backslash, at pos.
func (p *jsonParser) escapedString(start int) (string, error) {
	out := append(make([]byte, 0, len(p.data)-start), p.data[start:p.pos]...)
	for p.pos < len(p.data) {
		c := p.data[p.pos]
		switch {
		case c == '"':
			p.pos++
			return string(out), nil
		case c < 0x20:
			return "", errJSON
		case c != '\\':
			out = append(out, c)
			p.pos++
			continue
		}
		if p.pos+1 >= len(p.data) {
			return "", errJSON
		}
		escape := p.data[p.pos+1]
		p.pos += 2
		if decoded, ok := simpleEscapes[escape]; ok {
			out = append(out, decoded)
			continue
		}
		if escape != 'u' {
			return "", errJSON
		}
		r, ok := p.escapedRune()
		if !ok {
			return "", errJSON
		}
		out = utf8.AppendRune(out, r)
	}
	return "", errJSON
}

var simpleEscapes = map[byte]byte{'"': '"', '\\': '\\', '/': '/', 'b': '\b', 'f': '\f', 'n': '\n', 'r': '\r', 't': '\t'}

// escapedRune reads the four hex digits after `\u` and, for a high surrogate,
// the `\u` escape of its low surrogate: a lone surrogate is refused (RFC 7493
// §2.1) where encoding/json would put U+FFFD.
func (p *jsonParser) escapedRune() (rune, bool) {
	high, ok := p.hex4()
	switch {
	case !ok || high >= 0xDC00 && high <= 0xDFFF:
		return 0, false
	case high < 0xD800 || high > 0xDBFF:
		return high, true
	}
	if !bytes.HasPrefix(p.data[p.pos:], []byte("\\u")) {
		return 0, false
	}
	p.pos += 2
	low, ok := p.hex4()
	if !ok || low < 0xDC00 || low > 0xDFFF {
		return 0, false
	}
	return utf16.DecodeRune(high, low), true
}

func (p *jsonParser) hex4() (rune, bool) {
	if p.pos+4 > len(p.data) {
		return 0, false
	}
	var r rune
	for _, c := range p.data[p.pos : p.pos+4] {
		switch {
		case c >= '0' && c <= '9':
			r = r<<4 | rune(c-'0')
		case c >= 'a' && c <= 'f':
			r = r<<4 | rune(c-'a'+10)
		case c >= 'A' && c <= 'F':
			r = r<<4 | rune(c-'A'+10)
		default:
			return 0, false
		}
	}
	p.pos += 4
	return r, true
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
