package tokend_test

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/tokend/tokend/clients/go/tokend"
)

// writePEM writes blocks of type kind to dir/name and returns the path.
func writePEM(t *testing.T, dir, name, kind string, der []byte) string {
	t.Helper()
	path := filepath.Join(dir, name)
	if err := os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: kind, Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// selfSigned writes a self-signed certificate and its key; it serves as both
// the CA file and the client certificate here, which is all LoadMTLSConfig reads.
func selfSigned(t *testing.T) (certFile, keyFile string) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	template := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "test"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IsCA: true, BasicConstraintsValid: true,
	}
	der, err := x509.CreateCertificate(rand.Reader, template, template, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	return writePEM(t, dir, "cert.pem", "CERTIFICATE", der), writePEM(t, dir, "key.pem", "PRIVATE KEY", keyDER)
}

func TestLoadMTLSConfig(t *testing.T) {
	certFile, keyFile := selfSigned(t)
	for addr, host := range map[string]string{
		"127.0.0.1:50051": "127.0.0.1", "[::1]:50051": "::1", "tokend.internal:443": "tokend.internal",
	} {
		config, err := tokend.LoadMTLSConfig(addr, certFile, certFile, keyFile)
		if err != nil {
			t.Fatal(err)
		}
		if config.ServerName != host || config.MinVersion != tls.VersionTLS12 ||
			len(config.Certificates) != 1 || config.RootCAs == nil || config.InsecureSkipVerify {
			t.Errorf("%s: unexpected config %+v", addr, config)
		}
	}
}

func TestLoadMTLSConfigRefusesBadInput(t *testing.T) {
	certFile, keyFile := selfSigned(t)
	cases := map[string][4]string{
		"no port":         {"127.0.0.1", certFile, certFile, keyFile},
		"missing CA":      {"127.0.0.1:1", "/nonexistent/ca.pem", certFile, keyFile},
		"CA is not a PEM": {"127.0.0.1:1", keyFile, certFile, keyFile},
		"key mismatch":    {"127.0.0.1:1", certFile, certFile, certFile},
	}
	for name, args := range cases {
		if _, err := tokend.LoadMTLSConfig(args[0], args[1], args[2], args[3]); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}
