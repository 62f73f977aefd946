package tokend

// The signature layer, written on the standard library's crypto rather than a
// JOSE library: the same narrow rules as the Python client's jose module
// (RFC 8725), with every problem of a token reported as an *InvalidTokenError.

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/sha512"
	"errors"
	"fmt"
	"math/big"
	"strings"

	"github.com/tokend/tokend/clients/go/tokendv1"
)

// MaxCompactBytes bounds any token the signature layer looks at; the Verifier
// applies its own, tighter MaxTokenBytes first.
const MaxCompactBytes = 64 * 1024

// maxJWKSBytes bounds a JWK Set: it may come over the network.
const maxJWKSBytes = 1 << 20

const (
	minRSABits         = 2048 // RFC 7518 §3.3 / §3.5: 2048 bits or larger MUST be used
	maxRSABits         = 8192 // verification cost grows with the modulus
	maxRSAExponentBits = 64
)

// allAlgorithms are the JWS algorithms the signature layer implements. The
// Verifier's default allowlist is the four tokend signs with.
var allAlgorithms = map[string]bool{
	"ES256": true, "ES384": true, "ES512": true,
	"RS256": true, "RS384": true, "RS512": true,
	"PS256": true, "PS384": true, "PS512": true,
	"EdDSA": true,
}

// privateMembers are the JWK members of private or symmetric keys (RFC 7518 §6).
var privateMembers = []string{"d", "p", "q", "dp", "dq", "qi", "k", "oth"}

// keySourceHeaders point at keys outside the configured set (RFC 8725 §3.10,
// RFC 7515 §4.1.2-4.1.6): a token must never choose the key that verifies it.
var keySourceHeaders = []string{"jku", "x5u", "jwk", "x5c"}

// PublicKey is one verification key, bound to exactly one algorithm.
type PublicKey struct {
	// KID is the key's "kid"; empty keys are kept but never selected.
	KID string
	// Alg is the only algorithm this key verifies.
	Alg    string
	key    any // *ecdsa.PublicKey, *rsa.PublicKey or ed25519.PublicKey
	verify func(signingInput, signature []byte) bool
}

// RejectedKey is a JWK Set entry that was left out, and why.
type RejectedKey struct {
	KID    string
	Reason string
}

// KeySet is an immutable set of verification keys looked up by kid. A fixed
// KeySet can be given to NewVerifier as its source.
type KeySet struct {
	keys     []*PublicKey
	byKID    map[string]*PublicKey
	rejected []RejectedKey
	document []byte
}

// ParseKeySet parses a JWK Set (RFC 7517 §5) with the Python client's policy:
// the whole set is refused when it is not {"keys": [objects...]}, when any
// entry carries private or symmetric key material (a publisher that leaks keys
// is broken), or when two entries share a kid. Entries that cannot verify here
// are left out one by one (RFC 7517 §5 says to ignore them), never failing the
// set: unknown kty or crv, use other than sig, key_ops without verify, an RSA
// key without alg, under 2048 bits, with a bad exponent or the ROCA
// fingerprint, points off the curve, an alg the key does not fit. Rejected
// lists them.
func ParseKeySet(data []byte) (*KeySet, error) {
	if len(data) > maxJWKSBytes {
		return nil, fmt.Errorf("tokend: JWK Set larger than %d bytes", maxJWKSBytes)
	}
	document, err := parseStrictJSON(data)
	if err != nil {
		return nil, errors.New("tokend: JWK Set is not strict JSON")
	}
	entries, err := jwksEntries(document)
	if err != nil {
		return nil, err
	}
	set := &KeySet{byKID: map[string]*PublicKey{}, document: append([]byte(nil), data...)}
	for _, entry := range entries {
		key, err := keyFromJWK(entry)
		if err != nil {
			kid, _ := entry["kid"].(string)
			set.rejected = append(set.rejected, RejectedKey{KID: kid, Reason: err.Error()})
			continue
		}
		set.keys = append(set.keys, key)
		if key.KID != "" {
			set.byKID[key.KID] = key
		}
	}
	return set, nil
}

func jwksEntries(document any) ([]map[string]any, error) {
	object, ok := document.(map[string]any)
	if !ok {
		return nil, errors.New("tokend: JWK Set must be a JSON object")
	}
	list, ok := object["keys"].([]any)
	if !ok {
		return nil, errors.New(`tokend: JWK Set needs a "keys" array of objects`)
	}
	entries := make([]map[string]any, 0, len(list))
	kids := map[string]bool{}
	for _, item := range list {
		entry, ok := item.(map[string]any)
		if !ok {
			return nil, errors.New(`tokend: JWK Set needs a "keys" array of objects`)
		}
		for _, name := range privateMembers {
			if _, present := entry[name]; present {
				return nil, errors.New("tokend: JWK Set contains private or symmetric key material")
			}
		}
		if kid, ok := entry["kid"].(string); ok {
			if kids[kid] {
				return nil, errors.New("tokend: duplicate kid in JWK Set") // RFC 7517 §4.5
			}
			kids[kid] = true
		}
		entries = append(entries, entry)
	}
	return entries, nil
}

// Keys returns the usable keys in document order.
func (s *KeySet) Keys() []*PublicKey { return append([]*PublicKey(nil), s.keys...) }

// Rejected lists the entries ParseKeySet left out.
func (s *KeySet) Rejected() []RejectedKey { return append([]RejectedKey(nil), s.rejected...) }

// Get returns the key named kid, or nil.
func (s *KeySet) Get(kid string) *PublicKey { return s.byKID[kid] }

// Len is the number of usable keys.
func (s *KeySet) Len() int { return len(s.keys) }

// FetchJWKS returns the document the set was parsed from, so a fixed set can
// be given wherever a JWKSSource is expected.
func (s *KeySet) FetchJWKS(context.Context) ([]byte, error) { return s.document, nil }

// CurrentKeys implements KeyProvider: a fixed set never changes.
func (s *KeySet) CurrentKeys(context.Context) (*KeySet, error) { return s, nil }

// RefetchForUnknownKey implements KeyProvider: there is nothing newer.
func (s *KeySet) RefetchForUnknownKey(context.Context, *KeySet) *KeySet { return nil }

func keyFromJWK(jwk map[string]any) (*PublicKey, error) {
	if err := checkKeyUsage(jwk); err != nil {
		return nil, err
	}
	kid, hasKID := jwk["kid"]
	alg, hasAlg := jwk["alg"]
	if hasAlg {
		if _, ok := alg.(string); !ok {
			return nil, errors.New("JWK alg must be a string") // RFC 7517 §4.4
		}
	}
	key, impliedAlg, err := publicKeyFromJWK(jwk)
	if err != nil {
		return nil, err
	}
	algName, _ := alg.(string)
	if !hasAlg {
		algName = impliedAlg
	}
	if algName == "" {
		// RS* and PS* share one key type: without "alg" the header would choose.
		return nil, errors.New("RSA JWK needs alg")
	}
	kidName := ""
	if hasKID {
		text, ok := kid.(string)
		if !ok || text == "" {
			return nil, errors.New("kid must be a non-empty string")
		}
		kidName = text
	}
	verify, err := makeVerifier(algName, key)
	if err != nil {
		return nil, err
	}
	return &PublicKey{KID: kidName, Alg: algName, key: key, verify: verify}, nil
}

func checkKeyUsage(jwk map[string]any) error {
	if use, present := jwk["use"]; present && use != "sig" {
		return errors.New("JWK use is not sig") // RFC 7517 §4.2
	}
	ops, present := jwk["key_ops"]
	if !present {
		return nil
	}
	// RFC 7517 §4.3: an array of unique strings; "verify" must be among them.
	list, ok := ops.([]any)
	if !ok {
		return errors.New("JWK key_ops must be an array of strings")
	}
	seen := map[string]bool{}
	for _, op := range list {
		name, ok := op.(string)
		if !ok {
			return errors.New("JWK key_ops must be an array of strings")
		}
		if seen[name] {
			return errors.New("JWK key_ops does not allow verify")
		}
		seen[name] = true
	}
	if !seen["verify"] {
		return errors.New("JWK key_ops does not allow verify")
	}
	return nil
}

// curveSpec describes one ECDSA curve (RFC 7518 §3.4).
type curveSpec struct {
	alg   string
	size  int
	curve elliptic.Curve
	hash  crypto.Hash
}

var curves = map[string]curveSpec{
	"P-256": {"ES256", 32, elliptic.P256(), crypto.SHA256},
	"P-384": {"ES384", 48, elliptic.P384(), crypto.SHA384},
	"P-521": {"ES512", 66, elliptic.P521(), crypto.SHA512},
}

func publicKeyFromJWK(jwk map[string]any) (any, string, error) {
	switch jwk["kty"] {
	case "EC":
		return ecFromJWK(jwk)
	case "RSA":
		key, err := rsaFromJWK(jwk)
		return key, "", err
	case "OKP":
		key, err := okpFromJWK(jwk)
		return key, "EdDSA", err
	case "oct":
		return nil, "", errors.New("symmetric (oct) keys are never accepted") // RFC 8725 §3.1
	}
	return nil, "", errors.New("unsupported kty")
}

func memberBytes(jwk map[string]any, name string) ([]byte, error) {
	text, ok := jwk[name].(string)
	if !ok {
		return nil, fmt.Errorf("JWK member %s must be a base64url string", name)
	}
	return decodeB64URL(text)
}

func ecFromJWK(jwk map[string]any) (any, string, error) {
	name, _ := jwk["crv"].(string)
	spec, ok := curves[name]
	if !ok {
		return nil, "", errors.New("unsupported EC crv")
	}
	x, err := memberBytes(jwk, "x")
	if err != nil {
		return nil, "", err
	}
	y, err := memberBytes(jwk, "y")
	if err != nil {
		return nil, "", err
	}
	// RFC 7518 §6.2.1.2/§6.2.1.3: x and y are exactly the coordinate size.
	if len(x) != spec.size || len(y) != spec.size {
		return nil, "", errors.New("EC coordinates have the wrong length")
	}
	point := append(append([]byte{4}, x...), y...)
	// Refuses unreduced coordinates and points off the curve (invalid-curve attacks).
	key, err := ecdsa.ParseUncompressedPublicKey(spec.curve, point)
	if err != nil {
		return nil, "", errors.New("EC point is not on the curve")
	}
	return key, spec.alg, nil
}

func uintMember(jwk map[string]any, name string) (*big.Int, error) {
	raw, err := memberBytes(jwk, name)
	if err != nil {
		return nil, err
	}
	// RFC 7518 §2 Base64urlUInt: the minimum number of octets, so no leading zero.
	if len(raw) == 0 || raw[0] == 0 {
		return nil, fmt.Errorf("JWK member %s is not a minimal unsigned integer", name)
	}
	return new(big.Int).SetBytes(raw), nil
}

func rsaFromJWK(jwk map[string]any) (*rsa.PublicKey, error) {
	n, err := uintMember(jwk, "n")
	if err != nil {
		return nil, err
	}
	e, err := uintMember(jwk, "e")
	if err != nil {
		return nil, err
	}
	if n.BitLen() > maxRSABits || e.BitLen() > maxRSAExponentBits {
		return nil, errors.New("RSA key members are too large")
	}
	if n.BitLen() < minRSABits {
		return nil, fmt.Errorf("RSA modulus must be %d-%d bits", minRSABits, maxRSABits)
	}
	// e = 1 makes every "signature" equal its message; even e is not RSA.
	if e.Cmp(big.NewInt(3)) < 0 || e.Bit(0) == 0 {
		return nil, errors.New("RSA public exponent must be odd and at least 3")
	}
	if !e.IsInt64() || e.Int64() > 1<<31-1 {
		// Go's crypto/rsa refuses larger exponents; refusing the key here keeps it
		// a per-key decision instead of a failure at every verification.
		return nil, errors.New("RSA public exponent larger than this verifier supports")
	}
	if hasROCAFingerprint(n) {
		return nil, errors.New("RSA modulus has the ROCA fingerprint (CVE-2017-15361)")
	}
	return &rsa.PublicKey{N: n, E: int(e.Int64())}, nil
}

func okpFromJWK(jwk map[string]any) (ed25519.PublicKey, error) {
	// RFC 8037 §2: X25519/X448 cannot sign. Ed448 is not in Go's standard library.
	if jwk["crv"] != "Ed25519" {
		return nil, errors.New("unsupported OKP crv")
	}
	x, err := memberBytes(jwk, "x")
	if err != nil {
		return nil, err
	}
	if len(x) != ed25519.PublicKeySize {
		return nil, errors.New("OKP x has the wrong length")
	}
	if err := checkEdwardsPoint(x); err != nil {
		return nil, err
	}
	return ed25519.PublicKey(x), nil
}

var (
	ed25519P = new(big.Int).Sub(new(big.Int).Lsh(big.NewInt(1), 255), big.NewInt(19))
	// y of the two order-8 points of edwards25519 (p - y gives the other two);
	// the other points of small order have y in {0, 1, p - 1}.
	ed25519Order8Y, _ = new(big.Int).SetString(
		"2707385501144840649318225287225658788936804267575313519463743609750303402022", 10)
	ed25519SmallOrderY = []*big.Int{big.NewInt(0), big.NewInt(1), new(big.Int).Sub(ed25519P, big.NewInt(1)),
		ed25519Order8Y, new(big.Int).Sub(ed25519P, ed25519Order8Y)}
)

// checkEdwardsPoint refuses non-canonical encodings and points of small
// order: with such a public key (the identity, say) forged signatures verify
// for every message, as with RSA e = 1.
func checkEdwardsPoint(x []byte) error {
	littleEndian := make([]byte, len(x))
	for i, b := range x {
		littleEndian[len(x)-1-i] = b
	}
	littleEndian[0] &= 0x7F // the top bit is the sign of x
	y := new(big.Int).SetBytes(littleEndian)
	// RFC 8032 §5.1.3 step 1: y must be below p.
	if y.Cmp(ed25519P) >= 0 {
		return errors.New("OKP x is not a canonical point encoding")
	}
	for _, small := range ed25519SmallOrderY {
		if y.Cmp(small) == 0 {
			return errors.New("OKP x is a point of small order")
		}
	}
	return nil
}

// rocaPrimes: moduli from the flawed Infineon generator (CVE-2017-15361) are,
// modulo each of these primes, powers of 65537.
var rocaPrimes = []int64{3, 5, 7, 11, 13, 17, 19, 23, 29, 31, 37, 41, 43, 47, 53, 59, 61, 67, 71,
	73, 79, 83, 89, 97, 101, 103, 107, 109, 113, 127, 131, 137, 139, 149, 151, 157, 163, 167}

var rocaResidues = func() []map[int64]bool {
	sets := make([]map[int64]bool, len(rocaPrimes))
	for i, p := range rocaPrimes {
		sets[i] = map[int64]bool{}
		value := int64(1)
		for k := int64(0); k < p; k++ {
			sets[i][value] = true
			value = value * (65537 % p) % p
		}
	}
	return sets
}()

func hasROCAFingerprint(n *big.Int) bool {
	mod := new(big.Int)
	for i, p := range rocaPrimes {
		if !rocaResidues[i][mod.Mod(n, big.NewInt(p)).Int64()] {
			return false
		}
	}
	return true
}

var hashByAlg = map[string]crypto.Hash{
	"RS256": crypto.SHA256, "RS384": crypto.SHA384, "RS512": crypto.SHA512,
	"PS256": crypto.SHA256, "PS384": crypto.SHA384, "PS512": crypto.SHA512,
}

// makeVerifier checks that key may be used with alg and returns its verify
// function: the algorithm is bound to the key (RFC 8725 §3.1).
func makeVerifier(alg string, key any) (func(signingInput, signature []byte) bool, error) {
	switch k := key.(type) {
	case *ecdsa.PublicKey:
		for _, spec := range curves {
			if spec.alg == alg && spec.curve == k.Curve {
				return ecdsaVerifier(k, spec), nil
			}
		}
		return nil, fmt.Errorf("%s does not fit an EC %s key", alg, k.Curve.Params().Name)
	case *rsa.PublicKey:
		hash, ok := hashByAlg[alg]
		if !ok {
			return nil, fmt.Errorf("%s does not fit an RSA key", alg)
		}
		return rsaVerifier(k, hash, strings.HasPrefix(alg, "PS")), nil
	case ed25519.PublicKey:
		if alg != "EdDSA" {
			return nil, fmt.Errorf("%s does not fit an Ed25519 key", alg) // RFC 8037 §3.1
		}
		return ed25519Verifier(k), nil
	}
	return nil, errors.New("unsupported key")
}

func digest(hash crypto.Hash, data []byte) []byte {
	switch hash {
	case crypto.SHA256:
		sum := sha256.Sum256(data)
		return sum[:]
	case crypto.SHA384:
		sum := sha512.Sum384(data)
		return sum[:]
	default:
		sum := sha512.Sum512(data)
		return sum[:]
	}
}

func ecdsaVerifier(key *ecdsa.PublicKey, spec curveSpec) func([]byte, []byte) bool {
	return func(signingInput, signature []byte) bool {
		// RFC 7518 §3.4: the JWS signature is R || S, each exactly the curve size
		// (never DER). ecdsa.Verify refuses r, s outside [1, n-1].
		if len(signature) != 2*spec.size {
			return false
		}
		r := new(big.Int).SetBytes(signature[:spec.size])
		s := new(big.Int).SetBytes(signature[spec.size:])
		return ecdsa.Verify(key, digest(spec.hash, signingInput), r, s)
	}
}

func rsaVerifier(key *rsa.PublicKey, hash crypto.Hash, pss bool) func([]byte, []byte) bool {
	return func(signingInput, signature []byte) bool {
		// RFC 8017 §8.1.2 / §8.2.2 step 1: the signature is exactly k octets.
		if len(signature) != key.Size() {
			return false
		}
		hashed := digest(hash, signingInput)
		if pss {
			// RFC 7518 §3.5: MGF1 with the same hash, salt length = hash size.
			options := &rsa.PSSOptions{SaltLength: hash.Size(), Hash: hash}
			return rsa.VerifyPSS(key, hash, hashed, signature, options) == nil
		}
		return rsa.VerifyPKCS1v15(key, hash, hashed, signature) == nil
	}
}

func ed25519Verifier(key ed25519.PublicKey) func([]byte, []byte) bool {
	return func(signingInput, signature []byte) bool {
		// RFC 8032 §5.1.7: the signature is exactly 64 octets.
		return len(signature) == ed25519.SignatureSize && ed25519.Verify(key, signingInput, signature)
	}
}

// VerifiedJWS is a compact JWS whose signature verified.
type VerifiedJWS struct {
	Header  map[string]any // numbers are json.Number
	Payload []byte
	Key     *PublicKey
}

// VerifyCompact verifies a compact JWS against keys, allowing only algorithms,
// and returns its payload: the signature-only layer under Verifier. Every
// problem is an *InvalidTokenError; nothing about claims or typ is checked.
func VerifyCompact(token string, keys *KeySet, algorithms []string) ([]byte, error) {
	verified, err := VerifyJWS(token, keys, algorithms)
	if err != nil {
		return nil, err
	}
	return verified.Payload, nil
}

// VerifyJWS is VerifyCompact returning the header and key too.
func VerifyJWS(token string, keys *KeySet, algorithms []string) (verified *VerifiedJWS, err error) {
	defer recoverInvalid(&err)
	allowed := make(map[string]bool, len(algorithms))
	for _, alg := range algorithms {
		allowed[alg] = true
	}
	return verifyJWS(token, keys, allowed)
}

func verifyJWS(token string, keys *KeySet, allowed map[string]bool) (*VerifiedJWS, error) {
	if keys == nil {
		return nil, invalid(tokendv1.Reason_REASON_UNKNOWN_KEY, "no key set")
	}
	first, last, err := compactDots(token)
	if err != nil {
		return nil, err
	}
	header, err := decodeHeader(token[:first])
	if err != nil {
		return nil, err
	}
	key, err := selectKey(header, keys, allowed)
	if err != nil {
		return nil, err
	}
	payload, err := verifiedSegments(token, first, last, key)
	if err != nil {
		return nil, err
	}
	return &VerifiedJWS{Header: header, Payload: payload, Key: key}, nil
}

// compactDots checks the token's size and characters and returns where the
// two dots of header.payload.signature are.
func compactDots(token string) (first, last int, err error) {
	if len(token) > MaxCompactBytes {
		return 0, 0, invalid(tokendv1.Reason_REASON_TOO_LARGE, "")
	}
	for i := 0; i < len(token); i++ {
		if token[i] >= 0x80 {
			return 0, 0, malformed("token contains non-ASCII characters")
		}
	}
	// RFC 7515 §7.1: exactly header.payload.signature; no JSON serialization, no JWE.
	first, last = strings.IndexByte(token, '.'), strings.LastIndexByte(token, '.')
	if first < 0 || first == last || strings.IndexByte(token[first+1:last], '.') >= 0 {
		return 0, 0, malformed("token is not a three-segment compact JWS")
	}
	return first, last, nil
}

// verifiedSegments decodes payload and signature and checks the signature
// with key, which the header selected; it returns the payload.
func verifiedSegments(token string, first, last int, key *PublicKey) ([]byte, error) {
	payload, err := decodeB64URL(token[first+1 : last])
	if err != nil {
		return nil, malformed("payload is not canonical base64url")
	}
	signature, err := decodeB64URL(token[last+1:])
	if err != nil {
		return nil, malformed("signature is not canonical base64url")
	}
	// RFC 7515 §5.2 step 8: the signing input is the ASCII text "header.payload".
	if !key.verify([]byte(token[:last]), signature) {
		return nil, invalid(tokendv1.Reason_REASON_BAD_SIGNATURE, "")
	}
	return payload, nil
}

func decodeHeader(segment string) (map[string]any, error) {
	raw, err := decodeB64URL(segment)
	if err != nil {
		return nil, malformed("header is not canonical base64url")
	}
	value, err := parseStrictJSON(raw)
	if err != nil {
		return nil, malformed("header is not strict JSON")
	}
	header, ok := value.(map[string]any)
	if !ok {
		return nil, malformed("header is not a JSON object") // RFC 7515 §5.2
	}
	return header, nil
}

func selectKey(header map[string]any, keys *KeySet, allowed map[string]bool) (*PublicKey, error) {
	alg, ok := header["alg"].(string)
	if !ok {
		return nil, malformed("header alg is missing or not a string")
	}
	// RFC 8725 §3.1/§3.2: never "none", never HMAC, nothing we do not implement.
	if !allAlgorithms[alg] {
		return nil, invalid(tokendv1.Reason_REASON_DISALLOWED_ALGORITHM, "")
	}
	if err := checkHeaderMembers(header); err != nil {
		return nil, err
	}
	kid, _ := header["kid"].(string)
	key := keys.Get(kid)
	if kid == "" || key == nil {
		return nil, invalid(tokendv1.Reason_REASON_UNKNOWN_KEY, "")
	}
	// RFC 8725 §3.1: the key fixes the algorithm; the header may only agree with it.
	if alg != key.Alg || !allowed[alg] {
		return nil, invalid(tokendv1.Reason_REASON_DISALLOWED_ALGORITHM, "")
	}
	return key, nil
}

func checkHeaderMembers(header map[string]any) error {
	for _, name := range keySourceHeaders {
		if _, present := header[name]; present {
			return malformed("header " + name + " not accepted")
		}
	}
	// RFC 7515 §4.1.11: no extension is understood here, so any crit is fatal.
	if _, present := header["crit"]; present {
		return malformed("header crit names unsupported extensions")
	}
	// RFC 7797 §3: unencoded payloads are not supported.
	if b64, present := header["b64"]; present && b64 != true {
		return malformed("unencoded payload (b64) not accepted")
	}
	return nil
}

// recoverInvalid is the last net at the API boundary: a panic in parsing or
// crypto becomes a MALFORMED verdict instead of crashing the caller.
func recoverInvalid(err *error) {
	if recovered := recover(); recovered != nil {
		*err = malformed("token could not be processed")
	}
}
