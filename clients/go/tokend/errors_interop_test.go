//go:build interop

// Every error reason against live tokends: the cases of
// conformance/errors/cases.json (shared with the Python runner,
// tests/api/test_errors.py), on the servers of
// tests/support/error_servers.py named by the TOKEND_ERRORS_* variables. Run
// through tests/interop/test_go.py::test_go_error_details.

package tokend_test

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"os"
	"regexp"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/reflect/protoregistry"

	"github.com/tokend/tokend/clients/go/tokend"
	"github.com/tokend/tokend/clients/go/tokendv1"
)

type errorCase struct {
	Name                 string          `json:"name"`
	Server               string          `json:"server"`
	Caller               string          `json:"caller"`
	RPC                  string          `json:"rpc"`
	Request              json.RawMessage `json:"request"`
	RawRequestBase64     string          `json:"raw_request_base64"`
	Code                 string          `json:"code"`
	Reason               string          `json:"reason"`
	Field                string          `json:"field"`
	Retry                bool            `json:"retry"`
	Attempts             int             `json:"attempts"`
	MaxRetryDelaySeconds float64         `json:"max_retry_delay_seconds"`
	Setup                string          `json:"setup"`
}

// rawCodec sends bytes as they are: a request that is no valid protobuf.
type rawCodec struct{}

func (rawCodec) Marshal(v any) ([]byte, error) { return *v.(*[]byte), nil }
func (rawCodec) Unmarshal(data []byte, v any) error {
	*v.(*[]byte) = data
	return nil
}
func (rawCodec) Name() string { return "proto" }

type errorEnv struct {
	vars map[string]string
	get  func(string) string
}

func TestInteropErrors(t *testing.T) {
	get := func(name string) string {
		value := os.Getenv(name)
		if value == "" {
			t.Fatalf("%s is not set; run through tests/interop/test_go.py", name)
		}
		return value
	}
	data, err := os.ReadFile(get("TOKEND_ERRORS_CASES"))
	if err != nil {
		t.Fatal(err)
	}
	var doc struct {
		Domain string      `json:"domain"`
		Cases  []errorCase `json:"cases"`
	}
	if err := json.Unmarshal(data, &doc); err != nil {
		t.Fatal(err)
	}
	if doc.Domain != tokend.ErrorDomain || len(doc.Cases) == 0 {
		t.Fatalf("cases file: domain %q, %d cases", doc.Domain, len(doc.Cases))
	}
	env := &errorEnv{vars: map[string]string{}, get: get}
	if err := json.Unmarshal([]byte(get("TOKEND_ERRORS_VARS")), &env.vars); err != nil {
		t.Fatal(err)
	}
	for _, c := range doc.Cases {
		t.Run(c.Name, func(t *testing.T) { env.check(t, c) })
	}
}

func (e *errorEnv) dial(t *testing.T, ctx context.Context, server, caller string) *grpc.ClientConn {
	t.Helper()
	who := strings.ToUpper(caller)
	addr := e.get("TOKEND_ERRORS_ADDR_" + strings.ToUpper(server))
	config, err := tokend.LoadMTLSConfig(addr, e.get("TOKEND_ERRORS_CA_FILE"),
		e.get("TOKEND_ERRORS_CERT_"+who), e.get("TOKEND_ERRORS_KEY_"+who))
	if err != nil {
		t.Fatal(err)
	}
	// The server's own answer, not the outcome of DialMTLS's service config (its retries
	// and per-method timeouts would turn a slow STORE_UNAVAILABLE into DeadlineExceeded).
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(credentials.NewTLS(config)),
		grpc.WithDisableRetry())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = conn.Close() })
	return conn
}

func (e *errorEnv) check(t *testing.T, c errorCase) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	conn := e.dial(t, ctx, c.Server, c.Caller)
	vars := map[string]string{}
	for k, v := range e.vars {
		vars[k] = v
	}
	switch c.Setup {
	case "spent_refresh_token":
		vars["spent_refresh_token"] = e.spentRefreshToken(t, ctx)
	case "hold_stream": // takes the caller's one stream slot
		held, stop := context.WithCancel(ctx)
		defer stop()
		if _, err := callOnce(held, conn, c.RPC, mustRequest(t, c.RPC, "{}", nil)); err != nil {
			t.Fatalf("the held stream did not open: %v", err)
		}
	}
	var request any
	if c.RawRequestBase64 != "" {
		raw, err := base64.StdEncoding.DecodeString(c.RawRequestBase64)
		if err != nil {
			t.Fatal(err)
		}
		request = &raw
	} else {
		request = mustRequest(t, c.RPC, string(c.Request), vars)
	}
	attempts := max(c.Attempts, 1)
	var failure *tokend.Error
	for i := 0; i < attempts && failure == nil; i++ {
		_, err := callOnce(ctx, conn, c.RPC, request)
		failure = tokend.ErrorFrom(err)
	}
	if failure == nil {
		t.Fatalf("every attempt succeeded")
	}
	e.assertFailure(t, c, failure)
}

func (e *errorEnv) assertFailure(t *testing.T, c errorCase, got *tokend.Error) {
	t.Helper()
	if got.Code.String() != codeName(c.Code) || got.Reason != c.Reason || got.Domain != tokend.ErrorDomain {
		t.Fatalf("got %v (reason %q, domain %q), want %s %s", got.Code, got.Reason, got.Domain, c.Code, c.Reason)
	}
	if got.Metadata["method"] != c.RPC {
		t.Errorf("metadata method = %q, want %q", got.Metadata["method"], c.RPC)
	}
	if c.Field != "" {
		if len(got.FieldViolations) != 1 || got.FieldViolations[0].Field != c.Field || got.Metadata["field"] != c.Field {
			t.Errorf("field violations %+v, metadata %v; want field %q", got.FieldViolations, got.Metadata, c.Field)
		}
	} else if len(got.FieldViolations) != 0 {
		t.Errorf("unexpected field violations %+v", got.FieldViolations)
	}
	limit := c.MaxRetryDelaySeconds
	if limit == 0 {
		limit = 5
	}
	if c.Retry && (got.RetryDelay <= 0 || got.RetryDelay > time.Duration(limit*float64(time.Second))) {
		t.Errorf("retry delay %v, want within (0, %gs]", got.RetryDelay, limit)
	}
	if !c.Retry && got.RetryDelay != 0 {
		t.Errorf("retry delay %v on a reason that is not retried", got.RetryDelay)
	}
	// Never a secret in an answer: no long request value comes back.
	told := got.Message + strings.Join(mapValues(got.Metadata), " ")
	for _, m := range regexp.MustCompile(`"([^"]{20,})"`).FindAllStringSubmatch(string(c.Request), -1) {
		if strings.Contains(told, m[1]) {
			t.Errorf("the answer repeats a request value: %q", got.Message)
		}
	}
}

func (e *errorEnv) spentRefreshToken(t *testing.T, ctx context.Context) string {
	t.Helper()
	client := tokendv1.NewTokenServiceClient(e.dial(t, ctx, "main", "main"))
	issued, err := client.Issue(ctx, &tokendv1.IssueRequest{Subject: "reuse",
		Audience: []string{e.get("TOKEND_ERRORS_AUDIENCE")}, IncludeRefreshToken: true})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := client.Refresh(ctx, &tokendv1.RefreshRequest{RefreshToken: issued.GetRefreshToken()}); err != nil {
		t.Fatal(err)
	}
	return issued.GetRefreshToken()
}

// method is the TokenService method named rpc, from the generated descriptors.
func method(rpc string) protoreflect.MethodDescriptor {
	return tokendv1.File_tokend_v1_tokend_proto.Services().ByName("TokenService").Methods().ByName(protoreflect.Name(rpc))
}

func mustRequest(t *testing.T, rpc, text string, vars map[string]string) proto.Message {
	t.Helper()
	for name, value := range vars {
		quoted, _ := json.Marshal(value)
		text = strings.ReplaceAll(text, `"${`+name+`}"`, string(quoted))
	}
	kind, err := protoregistry.GlobalTypes.FindMessageByName(method(rpc).Input().FullName())
	if err != nil {
		t.Fatal(err)
	}
	request := kind.New().Interface()
	if err := protojson.Unmarshal([]byte(text), request); err != nil {
		t.Fatalf("request %s: %v", text, err)
	}
	return request
}

// callOnce makes one call (a stream: until its first message) and returns its error.
func callOnce(ctx context.Context, conn *grpc.ClientConn, rpc string, request any) (any, error) {
	md := method(rpc)
	path := "/tokend.v1.TokenService/" + rpc
	var opts []grpc.CallOption
	if _, raw := request.(*[]byte); raw {
		opts = append(opts, grpc.ForceCodec(rawCodec{}))
	}
	kind, err := protoregistry.GlobalTypes.FindMessageByName(md.Output().FullName())
	if err != nil {
		return nil, err
	}
	var response any = kind.New().Interface()
	if len(opts) > 0 {
		response = new([]byte)
	}
	if !md.IsStreamingServer() {
		return response, conn.Invoke(ctx, path, request, response, opts...)
	}
	stream, err := conn.NewStream(ctx, &grpc.StreamDesc{ServerStreams: true}, path, opts...)
	if err != nil {
		return nil, err
	}
	if err := stream.SendMsg(request); err != nil {
		return nil, err
	}
	if err := stream.CloseSend(); err != nil {
		return nil, err
	}
	return response, stream.RecvMsg(response)
}

func mapValues(m map[string]string) []string {
	out := make([]string, 0, len(m))
	for _, v := range m {
		out = append(out, v)
	}
	return out
}
