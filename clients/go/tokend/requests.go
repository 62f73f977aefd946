package tokend

import (
	"crypto/x509"

	"github.com/tokend/tokend/clients/go/tokendv1"
)

// CallerCertificateBinding asks tokend to bind the token it issues (an
// IssueRequest's or ExchangeRequest's Binding) to the client certificate the
// caller presents on this mutual-TLS connection (RFC 8705 §3): the token is
// then valid only when presented with that certificate. tokend answers
// FAILED_PRECONDITION on a connection without a client certificate.
//
//	client.Exchange(ctx, &tokendv1.ExchangeRequest{SubjectToken: token,
//		Audience: []string{"payments"}, Binding: tokend.CallerCertificateBinding()})
func CallerCertificateBinding() *tokendv1.CertificateBinding {
	return &tokendv1.CertificateBinding{Certificate: &tokendv1.CertificateBinding_CallerCertificate{CallerCertificate: true}}
}

// CertificateBinding asks tokend to bind the token to another certificate,
// e.g. a login service obtaining a token for the client that called it. The
// caller's policy entry must allow it (issue.bind_other_certificates,
// docs/policy.md), else PERMISSION_DENIED.
func CertificateBinding(cert *x509.Certificate) *tokendv1.CertificateBinding {
	return &tokendv1.CertificateBinding{Certificate: &tokendv1.CertificateBinding_CertificateDer{CertificateDer: cert.Raw}}
}
