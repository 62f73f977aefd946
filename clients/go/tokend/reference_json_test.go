package tokend

// The strict JSON parser as it was first written, on json.Decoder's token
// walk: too slow for every token, kept as the reference the hand-written
// parser must agree with (FuzzStrictJSON, TestStrictJSONAgreesWithReference).

import (
	"bytes"
	"encoding/json"
	"io"
	"strconv"
	"unicode/utf8"
)

func referenceStrictJSON(data []byte) (any, error) {
	if !utf8.Valid(data) || bytes.HasPrefix(data, []byte("\xef\xbb\xbf")) {
		return nil, errJSON
	}
	if bytes.IndexByte(data, '\\') >= 0 && referenceHasLoneSurrogate(data) {
		return nil, errJSON
	}
	decoder := json.NewDecoder(bytes.NewReader(data))
	decoder.UseNumber()
	value, err := referenceValue(decoder, 0)
	if err != nil {
		return nil, errJSON
	}
	if _, err := decoder.Token(); err != io.EOF {
		return nil, errJSON
	}
	return value, nil
}

func referenceValue(decoder *json.Decoder, depth int) (any, error) {
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
			return referenceObject(decoder, depth+1)
		}
		if t == '[' {
			return referenceArray(decoder, depth+1)
		}
		return nil, errJSON
	case json.Number:
		if !numberAllowed(t) {
			return nil, errJSON
		}
		return t, nil
	default:
		return t, nil
	}
}

func referenceObject(decoder *json.Decoder, depth int) (map[string]any, error) {
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
			return nil, errJSON
		}
		if object[name], err = referenceValue(decoder, depth); err != nil {
			return nil, err
		}
	}
	if _, err := decoder.Token(); err != nil {
		return nil, err
	}
	return object, nil
}

func referenceArray(decoder *json.Decoder, depth int) ([]any, error) {
	array := []any{}
	for decoder.More() {
		value, err := referenceValue(decoder, depth)
		if err != nil {
			return nil, err
		}
		array = append(array, value)
	}
	if _, err := decoder.Token(); err != nil {
		return nil, err
	}
	return array, nil
}

func referenceHasLoneSurrogate(data []byte) bool {
	pendingHigh := false
	for i := 0; i < len(data); i++ {
		if data[i] != '\\' {
			if pendingHigh {
				return true
			}
			continue
		}
		if i+1 >= len(data) {
			return false
		}
		if data[i+1] != 'u' || i+5 >= len(data) {
			if pendingHigh {
				return true
			}
			i++
			continue
		}
		code, err := strconv.ParseUint(string(data[i+2:i+6]), 16, 16)
		if err != nil {
			return false
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
