// Command loadgen drives one benchmark phase against tokend over gRPC and prints one
// JSON line; bench/run.py runs it as a separate process. It mirrors bench/loadgen.py
// (same flags, same JSON) at a fraction of the CPU per call, so that on two cores the
// server, not the load generator, is what saturates.
//
// Closed loop by default (-concurrency calls always in flight); with -rate it is open
// loop: calls start on a fixed schedule and latency counts from the scheduled start.
// Every phase is bounded in count and in time.
package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"os"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/status"

	pb "github.com/tokend/tokend/clients/go/tokendv1"
)

// clockTicks is USER_HZ, the unit of utime/stime in /proc/<pid>/stat (100 on Linux).
const clockTicks = 100

type pids []int

func (p *pids) String() string { return fmt.Sprint(*p) }
func (p *pids) Set(v string) error {
	n, err := strconv.Atoi(v)
	if err == nil {
		*p = append(*p, n)
	}
	return err
}

type options struct {
	addr, rpc, tokens, saveTokens, audience      string
	concurrency, channels, maxCount, warmupCount int
	batch, start                                 int
	maxSeconds, rate, warmup                     float64
	cycle                                        bool
	serverPIDs, peerPIDs                         pids
}

func parseFlags() options {
	var o options
	flag.StringVar(&o.addr, "addr", "", "host:port of the gRPC server")
	flag.StringVar(&o.rpc, "rpc", "", "health, jwks, verify, verify-repeat, verify-many or issue")
	flag.IntVar(&o.batch, "batch", 16, "verify-many: tokens per VerifyMany call (1 to 256)")
	flag.IntVar(&o.concurrency, "concurrency", 64, "calls in flight (closed loop)")
	flag.IntVar(&o.channels, "channels", 4, "TCP connections")
	flag.IntVar(&o.maxCount, "max-count", 0, "at most this many measured calls")
	flag.Float64Var(&o.maxSeconds, "max-seconds", 0, "at most this long")
	flag.Float64Var(&o.rate, "rate", 0, "open loop at this many calls/s")
	flag.Float64Var(&o.warmup, "warmup", 0.5, "seconds of unmeasured calls first")
	flag.IntVar(&o.warmupCount, "warmup-count", 2000, "at most this many warm-up calls")
	flag.Var(&o.serverPIDs, "server-pid", "server process to read CPU time of (repeatable)")
	flag.Var(&o.peerPIDs, "peer-pid", "another process whose CPU time to report apart, e.g. "+
		"the OpenBao that signs for tokend (repeatable)")
	flag.StringVar(&o.tokens, "tokens", "", "tokens to verify, one a line")
	flag.BoolVar(&o.cycle, "cycle", false, "verify: reuse tokens in order")
	flag.IntVar(&o.start, "start", 0, "verify: begin at this token of the pool (where the "+
		"previous phase on the same server stopped, so a cycle never meets its cache)")
	flag.StringVar(&o.saveTokens, "save-tokens", "", "issue: write issued tokens here")
	flag.StringVar(&o.audience, "audience", "bench-api", "audience to issue for and verify")
	flag.Parse()
	return o
}

// caller makes one call; worker picks the connection.
type caller func(ctx context.Context, worker int) error

var errExhausted = errors.New("token pool exhausted")

type target struct {
	opts   options
	health []healthpb.HealthClient
	tokend []pb.TokenServiceClient
	tokens []string
	cursor atomic.Int64
	mu     sync.Mutex
	issued []string
}

func (t *target) call() (caller, error) {
	n := len(t.tokend)
	switch t.opts.rpc {
	case "health":
		req := &healthpb.HealthCheckRequest{}
		return func(ctx context.Context, w int) error {
			_, err := t.health[w%n].Check(ctx, req)
			return err
		}, nil
	case "jwks":
		req := &pb.GetJwksRequest{}
		return func(ctx context.Context, w int) error {
			_, err := t.tokend[w%n].GetJwks(ctx, req)
			return err
		}, nil
	case "issue":
		return func(ctx context.Context, w int) error {
			req := &pb.IssueRequest{Subject: fmt.Sprintf("user-%d", w),
				Audience: []string{t.opts.audience}, Scopes: []string{"orders:read"}}
			resp, err := t.tokend[w%n].Issue(ctx, req)
			if err == nil && t.opts.saveTokens != "" {
				t.mu.Lock()
				t.issued = append(t.issued, resp.AccessToken)
				t.mu.Unlock()
			}
			return err
		}, nil
	case "verify", "verify-repeat":
		if len(t.tokens) == 0 {
			return nil, errors.New("verify needs -tokens")
		}
		return func(ctx context.Context, w int) error {
			token, ok := t.next()
			if !ok {
				return errExhausted
			}
			resp, err := t.tokend[w%n].Verify(ctx, &pb.VerifyRequest{Token: token,
				Audience: t.opts.audience})
			if err == nil && !resp.Valid {
				return fmt.Errorf("token refused: %s", resp.Reason)
			}
			return err
		}, nil
	case "verify-many":
		return t.verifyMany()
	}
	return nil, fmt.Errorf("unknown -rpc %q", t.opts.rpc)
}

// verifyMany sends -batch tokens from the pool per VerifyMany call; every result must
// be a valid VerifyResponse.
func (t *target) verifyMany() (caller, error) {
	if len(t.tokens) == 0 {
		return nil, errors.New("verify-many needs -tokens")
	}
	if t.opts.batch < 1 || t.opts.batch > 256 {
		return nil, errors.New("-batch takes 1 to 256")
	}
	n := len(t.tokend)
	return func(ctx context.Context, w int) error {
		req := &pb.VerifyManyRequest{Requests: make([]*pb.VerifyRequest, 0, t.opts.batch)}
		for i := 0; i < t.opts.batch; i++ {
			token, ok := t.next()
			if !ok {
				return errExhausted
			}
			req.Requests = append(req.Requests, &pb.VerifyRequest{Token: token,
				Audience: t.opts.audience})
		}
		resp, err := t.tokend[w%n].VerifyMany(ctx, req)
		if err != nil {
			return err
		}
		if len(resp.Results) != len(req.Requests) {
			return fmt.Errorf("%d results for %d requests", len(resp.Results), len(req.Requests))
		}
		for _, result := range resp.Results {
			if r := result.GetResponse(); r == nil || !r.Valid {
				return fmt.Errorf("token refused in batch: %v", result)
			}
		}
		return nil
	}, nil
}

// next hands each call its own token; verify-repeat always the first.
func (t *target) next() (string, bool) {
	if t.opts.rpc == "verify-repeat" {
		return t.tokens[0], true
	}
	i := t.cursor.Add(1) - 1
	if t.opts.cycle {
		return t.tokens[i%int64(len(t.tokens))], true
	}
	if i >= int64(len(t.tokens)) {
		return "", false
	}
	return t.tokens[i], true
}

type recorder struct {
	mu            sync.Mutex
	latencies     []time.Duration
	errors        int
	firstError    string
	unimplemented atomic.Bool
}

func (r *recorder) ok(d time.Duration) {
	r.mu.Lock()
	r.latencies = append(r.latencies, d)
	r.mu.Unlock()
}

func (r *recorder) fail(err error) {
	if status.Code(err) == codes.Unimplemented {
		r.unimplemented.Store(true)
	}
	r.mu.Lock()
	r.errors++
	if r.firstError == "" {
		r.firstError = err.Error()
		if len(r.firstError) > 300 {
			r.firstError = r.firstError[:300]
		}
	}
	r.mu.Unlock()
}

func closedLoop(call caller, concurrency, maxCount int, seconds float64, rec *recorder) {
	deadline := time.Now().Add(time.Duration(seconds * float64(time.Second)))
	var budget atomic.Int64
	var wg sync.WaitGroup
	for w := 0; w < concurrency; w++ {
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			for time.Now().Before(deadline) && budget.Add(1) <= int64(maxCount) {
				started := time.Now()
				ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
				err := call(ctx, w)
				cancel()
				if errors.Is(err, errExhausted) {
					return
				}
				if err != nil {
					rec.fail(err)
					if rec.unimplemented.Load() {
						return // a server without this RPC: the row says so
					}
					continue
				}
				rec.ok(time.Since(started))
			}
		}(w)
	}
	wg.Wait()
}

// openLoop starts calls on a fixed schedule; a call's latency counts from its slot.
func openLoop(call caller, o options, rec *recorder) {
	total := int(o.rate * o.maxSeconds)
	if o.maxCount < total {
		total = o.maxCount
	}
	interval := time.Duration(float64(time.Second) / o.rate)
	slots := make(chan int, o.concurrency)
	var wg sync.WaitGroup
	start := time.Now()
	for i := 0; i < total; i++ {
		scheduled := start.Add(time.Duration(i) * interval)
		if d := time.Until(scheduled); d > 0 {
			time.Sleep(d)
		}
		slots <- i // blocks when the server fell far behind: do not pile up forever
		wg.Add(1)
		go func(i int, scheduled time.Time) {
			defer func() { <-slots; wg.Done() }()
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			if err := call(ctx, i); err != nil {
				if !errors.Is(err, errExhausted) {
					rec.fail(err)
				}
				return
			}
			rec.ok(time.Since(scheduled))
		}(i, scheduled)
	}
	wg.Wait()
}

func processCPU(list []int) float64 {
	total := 0.0
	for _, pid := range list {
		raw, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
		if err != nil {
			continue
		}
		text := string(raw)
		fields := strings.Fields(text[strings.LastIndexByte(text, ')')+1:])
		utime, _ := strconv.ParseFloat(fields[11], 64)
		stime, _ := strconv.ParseFloat(fields[12], 64)
		total += (utime + stime) / clockTicks
	}
	return total
}

func ownCPU() float64 {
	var usage syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &usage)
	return time.Duration(usage.Utime.Nano() + usage.Stime.Nano()).Seconds()
}

func round(v float64, places int) float64 {
	p := 1.0
	for i := 0; i < places; i++ {
		p *= 10
	}
	return float64(int64(v*p+0.5)) / p
}

func readTokens(path string) ([]string, error) {
	if path == "" {
		return nil, nil
	}
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var out []string
	scanner := bufio.NewScanner(f)
	scanner.Buffer(make([]byte, 64*1024), 64*1024)
	for scanner.Scan() {
		if line := strings.TrimSpace(scanner.Text()); line != "" {
			out = append(out, line)
		}
	}
	return out, scanner.Err()
}

func run(o options) (map[string]any, error) {
	t := &target{opts: o}
	var err error
	if t.tokens, err = readTokens(o.tokens); err != nil {
		return nil, err
	}
	if len(t.tokens) > 0 {
		t.cursor.Store(int64(o.start % len(t.tokens)))
	}
	for i := 0; i < o.channels; i++ {
		// WithNoProxy: loopback only, whatever the environment says.
		conn, err := grpc.NewClient(o.addr, grpc.WithTransportCredentials(insecure.NewCredentials()),
			grpc.WithNoProxy())
		if err != nil {
			return nil, err
		}
		defer conn.Close()
		t.health = append(t.health, healthpb.NewHealthClient(conn))
		t.tokend = append(t.tokend, pb.NewTokenServiceClient(conn))
	}
	call, err := t.call()
	if err != nil {
		return nil, err
	}
	if o.warmup > 0 {
		closedLoop(call, o.concurrency, o.warmupCount, o.warmup, &recorder{})
	}
	rec := &recorder{}
	cpu0, peer0, own0 := processCPU(o.serverPIDs), processCPU(o.peerPIDs), ownCPU()
	started := time.Now()
	if o.rate > 0 {
		openLoop(call, o, rec)
	} else {
		closedLoop(call, o.concurrency, o.maxCount, o.maxSeconds, rec)
	}
	seconds := time.Since(started).Seconds()
	serverCPU, clientCPU := processCPU(o.serverPIDs)-cpu0, ownCPU()-own0
	peerCPU := processCPU(o.peerPIDs) - peer0
	if o.saveTokens != "" {
		if err := os.WriteFile(o.saveTokens, []byte(strings.Join(t.issued, "\n")+"\n"), 0o600); err != nil {
			return nil, err
		}
	}
	sort.Slice(rec.latencies, func(i, j int) bool { return rec.latencies[i] < rec.latencies[j] })
	count := len(rec.latencies)
	us := func(q float64) any {
		if count == 0 {
			return nil
		}
		i := int(q * float64(count))
		if i >= count {
			i = count - 1
		}
		return round(float64(rec.latencies[i].Nanoseconds())/1000, 1)
	}
	result := map[string]any{
		"rpc": o.rpc, "count": count, "errors": rec.errors, "first_error": nil,
		"seconds": round(seconds, 3), "rps": round(float64(count)/seconds, 1),
		"p50_us": us(0.50), "p90_us": us(0.90), "p99_us": us(0.99), "max_us": us(1.0),
		"server_cpu_s": round(serverCPU, 3), "client_cpu_s": round(clientCPU, 3),
		"server_cpu_us_per_call": nil, "loadgen": "go",
	}
	if rec.firstError != "" {
		result["first_error"] = rec.firstError
	}
	if count > 0 {
		result["server_cpu_us_per_call"] = round(serverCPU/float64(count)*1e6, 1)
	}
	if len(o.peerPIDs) > 0 {
		result["peer_cpu_s"] = round(peerCPU, 3)
		if count > 0 {
			result["peer_cpu_us_per_call"] = round(peerCPU/float64(count)*1e6, 1)
		}
	}
	if rec.unimplemented.Load() {
		result["unimplemented"] = true
	}
	if len(t.tokens) > 0 {
		// Where the next phase on this server should begin: warm-up calls included.
		result["next_token"] = t.cursor.Load() % int64(len(t.tokens))
	}
	if o.rpc == "verify-many" {
		// A call verifies -batch tokens: the figures per token are what compare with
		// one unary Verify per token.
		tokens := count * o.batch
		result["batch"] = o.batch
		result["tokens"] = tokens
		result["tokens_per_s"] = round(float64(tokens)/seconds, 1)
		result["server_cpu_us_per_token"] = nil
		if tokens > 0 {
			result["server_cpu_us_per_token"] = round(serverCPU/float64(tokens)*1e6, 2)
		}
	}
	return result, nil
}

func main() {
	o := parseFlags()
	if o.addr == "" || o.rpc == "" || o.maxCount <= 0 || o.maxSeconds <= 0 {
		fmt.Fprintln(os.Stderr, "loadgen: -addr, -rpc, -max-count and -max-seconds are required")
		os.Exit(2)
	}
	result, err := run(o)
	if err != nil {
		fmt.Fprintln(os.Stderr, "loadgen:", err)
		os.Exit(1)
	}
	line, _ := json.Marshal(result)
	fmt.Println(string(line))
}
