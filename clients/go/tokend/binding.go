package tokend

// Certificate-bound access tokens (RFC 8705 §3): the `cnf` rule (rules B1-B5
// of docs/verifier-contract.md §9) and the ways a server learns which client
// certificate presented a token. The Envoy x-forwarded-client-cert parser is
// hand-written, as in clients/python/tokend_client/binding.py: no maintained Go
// library parses that header, and its grammar is small.

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"net/url"
	"regexp"
	"strings"
	"unicode/utf8"

	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/peer"

	"github.com/tokend/tokend/clients/go/tokendv1"
)

// X5TS256 is the `cnf` member of a certificate-bound token (RFC 8705 §3.1).
const X5TS256 = "x5t#S256"

// Limits of the presenter inputs.
const (
	// MaxCertificateDERBytes bounds a presenter certificate (as tokend does).
	MaxCertificateDERBytes = 16 * 1024
	// MaxXFCCChars bounds an x-forwarded-client-cert header: a URL-encoded PEM
	// of a 16 KiB certificate fits.
	MaxXFCCChars = 64 * 1024
)

// ErrInvalidPresenter is wrapped by the errors of the Presenter constructors:
// a certificate or thumbprint that cannot name a presenter. It is an argument
// error, not a verdict on a token.
var ErrInvalidPresenter = errors.New("tokend: invalid presenter")

// SHA-256 is 32 bytes: 43 base64url characters without padding, the last one
// carrying 2 bits that must be zero (one spelling per value).
var (
	thumbprintPattern = regexp.MustCompile(`^[A-Za-z0-9_-]{42}[AEIMQUYcgkosw048]$`)
	hexSHA256Pattern  = regexp.MustCompile(`^[0-9A-Fa-f]{64}$`)
)

// Presenter names the client certificate a token was presented with, by its
// x5t#S256 thumbprint. The zero Presenter means no certificate was presented:
// a bound token is then refused (REASON_CERTIFICATE_MISMATCH).
type Presenter struct{ thumbprint string }

// Thumbprint returns the x5t#S256 (base64url SHA-256 of the DER), "" for none.
func (p Presenter) Thumbprint() string { return p.thumbprint }

// IsZero reports whether p names no certificate.
func (p Presenter) IsZero() bool { return p.thumbprint == "" }

// IsThumbprint reports whether value is a canonical x5t#S256 (43 base64url characters).
func IsThumbprint(value string) bool { return thumbprintPattern.MatchString(value) }

// CertificateThumbprint returns the x5t#S256 of a certificate:
// base64url(SHA-256(DER)) (RFC 8705 §3.1).
func CertificateThumbprint(cert *x509.Certificate) string {
	sum := sha256.Sum256(cert.Raw)
	return base64.RawURLEncoding.EncodeToString(sum[:])
}

// PresenterOfCertificate names a parsed certificate (e.g. from a TLS handshake).
func PresenterOfCertificate(cert *x509.Certificate) (Presenter, error) {
	if cert == nil || len(cert.Raw) == 0 {
		return Presenter{}, fmt.Errorf("%w: no certificate", ErrInvalidPresenter)
	}
	return Presenter{CertificateThumbprint(cert)}, nil
}

// PresenterOfDER names a DER-encoded certificate (at most MaxCertificateDERBytes).
func PresenterOfDER(der []byte) (Presenter, error) {
	if len(der) == 0 || len(der) > MaxCertificateDERBytes {
		return Presenter{}, fmt.Errorf("%w: a certificate is 1-%d bytes of DER", ErrInvalidPresenter, MaxCertificateDERBytes)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return Presenter{}, fmt.Errorf("%w: not a DER-encoded X.509 certificate (PEM? decode it first)", ErrInvalidPresenter)
	}
	return PresenterOfCertificate(cert)
}

// PresenterOfThumbprint names a certificate by its x5t#S256, e.g. one a
// trusted proxy computed.
func PresenterOfThumbprint(x5tS256 string) (Presenter, error) {
	if !IsThumbprint(x5tS256) {
		return Presenter{}, fmt.Errorf("%w: an x5t#S256 is 43 base64url characters without padding (RFC 8705 §3.1)",
			ErrInvalidPresenter)
	}
	return Presenter{x5tS256}, nil
}

// PresenterFromTLS names the client certificate of a server-side TLS
// connection (http.Request.TLS, tls.Conn.ConnectionState()); the zero
// Presenter when there is none. Request client certificates with
// tls.Config.ClientAuth = tls.RequireAndVerifyClientCert, so the certificate
// is one your CA vouches for.
func PresenterFromTLS(state *tls.ConnectionState) Presenter {
	if state == nil || len(state.PeerCertificates) == 0 {
		return Presenter{}
	}
	// PeerCertificates[0] is the leaf, the certificate the client proved it holds.
	presenter, _ := PresenterOfCertificate(state.PeerCertificates[0])
	return presenter
}

// PresenterFromGRPC names the caller's client certificate in a gRPC server
// handler or interceptor (peer.FromContext, credentials.TLSInfo); the zero
// Presenter on a connection without TLS or without a client certificate.
func PresenterFromGRPC(ctx context.Context) Presenter {
	p, ok := peer.FromContext(ctx)
	if !ok || p.AuthInfo == nil {
		return Presenter{}
	}
	switch info := p.AuthInfo.(type) {
	case credentials.TLSInfo:
		return PresenterFromTLS(&info.State)
	case *credentials.TLSInfo:
		return PresenterFromTLS(&info.State)
	}
	return Presenter{}
}

// PresenterFromXFCC names the client certificate an Envoy sidecar reports in
// the x-forwarded-client-cert header; the zero Presenter when the header names
// none, an error wrapping ErrInvalidPresenter when it is malformed.
//
// Only the last element is read: each proxy appends its own, so the last is
// the one your sidecar wrote. Hash= (hex SHA-256 of the DER) is converted to
// base64url; Cert= (URL-encoded PEM) is hashed; when both are present they
// must agree. Trust this header ONLY on connections from your own sidecar
// (loopback or a socket only it can reach), with forward_client_cert_details:
// SANITIZE_SET: anyone reaching the application directly could otherwise
// write any thumbprint into it.
func PresenterFromXFCC(header string) (Presenter, error) {
	if len(header) > MaxXFCCChars && utf8.RuneCountInString(header) > MaxXFCCChars {
		return Presenter{}, fmt.Errorf("%w: x-forwarded-client-cert is longer than %d characters", ErrInvalidPresenter, MaxXFCCChars)
	}
	elements, err := splitXFCC(header)
	if err != nil || len(elements) == 0 {
		return Presenter{}, err
	}
	pairs := elements[len(elements)-1]
	fromHash, err := xfccHashThumbprint(pairs)
	if err != nil {
		return Presenter{}, err
	}
	fromCert, err := xfccCertThumbprint(pairs)
	if err != nil {
		return Presenter{}, err
	}
	if fromHash != "" && fromCert != "" && fromHash != fromCert {
		return Presenter{}, xfccError("Hash and Cert name different certificates")
	}
	if fromCert != "" {
		return Presenter{fromCert}, nil
	}
	return Presenter{fromHash}, nil
}

func xfccError(detail string) error {
	return fmt.Errorf("%w: x-forwarded-client-cert: %s", ErrInvalidPresenter, detail)
}

func xfccHashThumbprint(pairs map[string]string) (string, error) {
	value, ok := pairs["hash"]
	if !ok {
		return "", nil
	}
	if !hexSHA256Pattern.MatchString(value) {
		return "", xfccError("Hash is not a hex SHA-256 digest")
	}
	digest, _ := hex.DecodeString(value)
	return base64.RawURLEncoding.EncodeToString(digest), nil
}

func xfccCertThumbprint(pairs map[string]string) (string, error) {
	value, ok := pairs["cert"]
	if !ok {
		return "", nil
	}
	text, err := url.PathUnescape(value)
	if err != nil {
		return "", xfccError("Cert is not a URL-encoded PEM certificate")
	}
	block, _ := pem.Decode([]byte(text))
	if block == nil || block.Type != "CERTIFICATE" {
		return "", xfccError("Cert is not a URL-encoded PEM certificate")
	}
	presenter, err := PresenterOfDER(block.Bytes)
	if err != nil {
		return "", xfccError("Cert is not a URL-encoded PEM certificate")
	}
	return presenter.thumbprint, nil
}

// xfccSplitter splits the header into elements (on `,`) of key=value pairs (on
// `;`); values may be double-quoted with `\"` inside (Envoy's format). Keys are
// caseless. Same grammar as the Python client's _split_xfcc.
type xfccSplitter struct {
	elements   []map[string]string
	pairs      map[string]string
	key, value strings.Builder
	inValue    bool
}

func splitXFCC(header string) ([]map[string]string, error) {
	s := &xfccSplitter{pairs: map[string]string{}}
	runes := []rune(header)
	quoted := false
	for i := 0; i < len(runes); i++ {
		char := runes[i]
		switch {
		case quoted && char == '\\' && i+1 < len(runes):
			i++
			s.value.WriteRune(runes[i])
		case quoted && char == '"':
			quoted = false
		case quoted:
			s.value.WriteRune(char)
		case char == '"' && s.inValue:
			quoted = true
		case char == '=' && !s.inValue:
			s.inValue = true
		case char == ';' || char == ',':
			if err := s.closePair(); err != nil {
				return nil, err
			}
			if char == ',' {
				s.closeElement()
			}
		case s.inValue:
			s.value.WriteRune(char)
		default:
			s.key.WriteRune(char)
		}
	}
	if quoted {
		return nil, xfccError("unterminated quoted value")
	}
	if err := s.closePair(); err != nil {
		return nil, err
	}
	s.closeElement()
	return s.elements, nil
}

func (s *xfccSplitter) closePair() error {
	name := strings.ToLower(strings.TrimSpace(s.key.String()))
	if name != "" || s.value.Len() > 0 {
		if name == "" || !s.inValue {
			return xfccError("an element is not key=value pairs")
		}
		// DNS (one per SAN) may repeat; the certificate itself must be named once.
		if _, seen := s.pairs[name]; seen && (name == "hash" || name == "cert") {
			return xfccError(name + " appears twice in an element")
		}
		if _, seen := s.pairs[name]; !seen {
			s.pairs[name] = strings.TrimSpace(s.value.String())
		}
	}
	s.key.Reset()
	s.value.Reset()
	s.inValue = false
	return nil
}

func (s *xfccSplitter) closeElement() {
	if len(s.pairs) > 0 {
		s.elements = append(s.elements, s.pairs)
	}
	s.pairs = map[string]string{}
}

// checkConfirmation applies rules B1-B3: an unbound token passes whoever
// presents it (B4); a bound one only with the presenter it names.
func checkConfirmation(raw map[string]any, presenter Presenter) error {
	value, present := raw["cnf"]
	if !present {
		return nil
	}
	// RFC 7800 §3.1: cnf is a JSON object of confirmation members.
	cnf, ok := value.(map[string]any)
	if !ok {
		return malformed("claim cnf is not a JSON object")
	}
	member, bound := cnf[X5TS256]
	thumbprint, ok := member.(string)
	if bound && (!ok || !IsThumbprint(thumbprint)) {
		return malformed("claim cnf.x5t#S256 is not a SHA-256 thumbprint")
	}
	// RFC 7800 §3: a confirmation this verifier cannot check is never "unbound".
	if !bound || len(cnf) != 1 {
		return invalid(tokendv1.Reason_REASON_CERTIFICATE_MISMATCH, "claim cnf holds a confirmation method this verifier cannot check")
	}
	if presenter.IsZero() {
		return invalid(tokendv1.Reason_REASON_CERTIFICATE_MISMATCH, "token is bound to a certificate and none was presented")
	}
	// RFC 8705 §3: the thumbprints must be equal; constant time, so timing
	// tells a prober nothing about the expected value.
	if subtle.ConstantTimeCompare([]byte(thumbprint), []byte(presenter.thumbprint)) != 1 {
		return invalid(tokendv1.Reason_REASON_CERTIFICATE_MISMATCH, "token is bound to another certificate than the presenter's")
	}
	return nil
}
