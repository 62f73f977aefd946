package tokend

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"os"

	"google.golang.org/grpc"
	"google.golang.org/grpc/connectivity"
	"google.golang.org/grpc/credentials"
)

// DialMTLS connects to tokend at addr ("host:port") with mutual TLS and waits
// until the connection is ready or ctx ends, so a wrong address, CA or client
// certificate fails here rather than on the first call. Give ctx a deadline:
// without one, an unreachable server makes DialMTLS wait for ever. The connection
// has DialOptions: the shared retry policy and default deadlines (ServiceConfig).
//
// caFile is the PEM CA bundle that signed the server's certificate; certFile
// and keyFile are this client's PEM certificate and key (tokend takes the
// caller's client_id from the certificate). opts are appended to
// DialOptions and the TLS transport option, e.g. interceptors; WithVerifyBatching
// among them tunes Verify batching (VerifyBatching).
func DialMTLS(ctx context.Context, addr, caFile, certFile, keyFile string,
	opts ...grpc.DialOption) (*grpc.ClientConn, error) {
	config, err := LoadMTLSConfig(addr, caFile, certFile, keyFile)
	if err != nil {
		return nil, err
	}
	batching := VerifyBatching{}
	for _, opt := range opts {
		if chosen, ok := opt.(batchingOption); ok {
			batching = chosen.config
		}
	}
	all, err := DialOptionsWith(batching)
	if err != nil {
		return nil, err
	}
	all = append(all, grpc.WithTransportCredentials(credentials.NewTLS(config)))
	all = append(all, opts...)
	conn, err := grpc.NewClient(addr, all...)
	if err != nil {
		return nil, fmt.Errorf("tokend: dial %s: %w", addr, err)
	}
	if err := waitReady(ctx, conn); err != nil {
		_ = conn.Close()
		return nil, fmt.Errorf("tokend: dial %s: %w", addr, err)
	}
	return conn, nil
}

// LoadMTLSConfig builds the client TLS configuration DialMTLS uses: TLS 1.2 or
// later, the server verified against caFile only (not the system roots) under
// the host name or IP address of addr, and the client certificate presented.
func LoadMTLSConfig(addr, caFile, certFile, keyFile string) (*tls.Config, error) {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return nil, fmt.Errorf("tokend: address %q is not host:port: %w", addr, err)
	}
	roots, err := loadCAPool(caFile)
	if err != nil {
		return nil, err
	}
	cert, err := tls.LoadX509KeyPair(certFile, keyFile)
	if err != nil {
		return nil, fmt.Errorf("tokend: client certificate: %w", err)
	}
	return &tls.Config{
		MinVersion:   tls.VersionTLS12,
		RootCAs:      roots,
		Certificates: []tls.Certificate{cert},
		ServerName:   host,
	}, nil
}

func loadCAPool(caFile string) (*x509.CertPool, error) {
	pem, err := os.ReadFile(caFile)
	if err != nil {
		return nil, fmt.Errorf("tokend: CA file: %w", err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pem) {
		return nil, fmt.Errorf("tokend: CA file %s holds no PEM certificate", caFile)
	}
	return pool, nil
}

// waitReady starts connecting (grpc.NewClient is lazy: it begins IDLE) and
// waits for READY. TRANSIENT_FAILURE is not final, since gRPC keeps retrying
// with backoff; only ctx bounds the wait.
func waitReady(ctx context.Context, conn *grpc.ClientConn) error {
	for {
		state := conn.GetState()
		switch state {
		case connectivity.Ready:
			return nil
		case connectivity.Shutdown:
			return errors.New("connection closed")
		case connectivity.Idle:
			conn.Connect() // an idle channel does not reconnect by itself
		}
		if !conn.WaitForStateChange(ctx, state) {
			return fmt.Errorf("not ready (last state %s): %w", state, ctx.Err())
		}
	}
}
