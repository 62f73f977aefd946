package tokend_test

// conformance/batching/cases.json (format: conformance/README.md "Batching cases"), read
// by the Python, Node and Java clients' tests too: how VerifyMany splits requests into
// calls (chunks and their encoded sizes), how the Verify queue takes its batches by the
// same rule, and the error a VerifyMany item's InvalidRequest becomes.

import (
	"encoding/json"
	"maps"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"github.com/tokend/tokend/clients/go/tokend"
	"github.com/tokend/tokend/clients/go/tokendv1"
)

type batchingCases struct {
	MaxBatchBytes int `json:"max_batch_bytes"`
	Split         []struct {
		ID       string `json:"id"`
		MaxBatch int    `json:"max_batch"`
		Requests []struct {
			TokenLength    int      `json:"token_length"`
			Audience       string   `json:"audience"`
			RequiredScopes []string `json:"required_scopes"`
		} `json:"requests"`
		Expect struct {
			Chunks     [][]int `json:"chunks"`
			ChunkBytes []int   `json:"chunk_bytes"`
		} `json:"expect"`
	} `json:"split"`
	Invalid []struct {
		ID      string `json:"id"`
		Invalid struct {
			Field       string `json:"field"`
			Description string `json:"description"`
			Reason      string `json:"reason"`
		} `json:"invalid"`
		Expect struct {
			Code            string                  `json:"code"`
			Message         string                  `json:"message"`
			Reason          string                  `json:"reason"`
			Domain          string                  `json:"domain"`
			Metadata        map[string]string       `json:"metadata"`
			FieldViolations []tokend.FieldViolation `json:"field_violations"`
			Retry           bool                    `json:"retry"`
		} `json:"expect"`
	} `json:"invalid"`
}

func readBatchingCases(t *testing.T) batchingCases {
	t.Helper()
	raw, err := os.ReadFile(filepath.Join(conformanceDir(t), "batching", "cases.json"))
	if err != nil {
		t.Fatal(err)
	}
	var cases batchingCases
	if err := json.Unmarshal(raw, &cases); err != nil {
		t.Fatal(err)
	}
	// A runner that finds nothing to check must not pass.
	if len(cases.Split) < 10 || len(cases.Invalid) < 5 || cases.MaxBatchBytes != 60*1024 {
		t.Fatalf("conformance/batching/cases.json: %d split and %d invalid cases, cap %d",
			len(cases.Split), len(cases.Invalid), cases.MaxBatchBytes)
	}
	return cases
}

func TestBatchingConformanceSplit(t *testing.T) {
	for _, c := range readBatchingCases(t).Split {
		t.Run(c.ID, func(t *testing.T) {
			requests := make([]*tokendv1.VerifyRequest, len(c.Requests))
			for n, r := range c.Requests { // the token is 'x' repeated (README)
				requests[n] = &tokendv1.VerifyRequest{Token: strings.Repeat("x", r.TokenLength),
					Audience: r.Audience, RequiredScopes: r.RequiredScopes}
			}
			chunks := tokend.SplitVerifyMany(requests, c.MaxBatch)
			if !reflect.DeepEqual(chunks, c.Expect.Chunks) {
				t.Fatalf("VerifyMany's chunks %v, want %v", chunks, c.Expect.Chunks)
			}
			if queued := tokend.QueueBatches(requests, c.MaxBatch); !reflect.DeepEqual(queued, c.Expect.Chunks) {
				t.Fatalf("the Verify queue's batches %v, want %v", queued, c.Expect.Chunks)
			}
			sizes := []int{}
			for _, chunk := range chunks {
				many := &tokendv1.VerifyManyRequest{}
				for _, n := range chunk {
					many.Requests = append(many.Requests, requests[n])
				}
				sizes = append(sizes, proto.Size(many))
			}
			if !reflect.DeepEqual(sizes, c.Expect.ChunkBytes) {
				t.Fatalf("encoded chunk sizes %v, want %v", sizes, c.Expect.ChunkBytes)
			}
		})
	}
}

func TestBatchingConformanceInvalid(t *testing.T) {
	for _, c := range readBatchingCases(t).Invalid {
		t.Run(c.ID, func(t *testing.T) {
			err := tokend.ItemError(&tokendv1.InvalidRequest{Field: c.Invalid.Field,
				Description: c.Invalid.Description, Reason: c.Invalid.Reason})
			st, ok := status.FromError(err)
			if !ok || st.Code().String() != codeName(c.Expect.Code) || st.Message() != c.Expect.Message {
				t.Fatalf("status %v, want %s %q", err, c.Expect.Code, c.Expect.Message)
			}
			got := tokend.ErrorFrom(err)
			want := c.Expect
			if got.Reason != want.Reason || got.Domain != want.Domain || !maps.Equal(got.Metadata, want.Metadata) {
				t.Fatalf("ErrorInfo %q %q %v, want %q %q %v", got.Reason, got.Domain, got.Metadata,
					want.Reason, want.Domain, want.Metadata)
			}
			if len(got.FieldViolations) != len(want.FieldViolations) ||
				(len(want.FieldViolations) > 0 && !reflect.DeepEqual(got.FieldViolations, want.FieldViolations)) {
				t.Fatalf("field violations %v, want %v", got.FieldViolations, want.FieldViolations)
			}
			if (got.RetryDelay != 0) != want.Retry {
				t.Fatalf("retry delay %v, want retry %v", got.RetryDelay, want.Retry)
			}
		})
	}
}

// codeName is a case's code ("INVALID_ARGUMENT") as codes.Code spells it ("InvalidArgument").
func codeName(upper string) string {
	for c := codes.OK; c <= codes.Unauthenticated; c++ {
		if strings.EqualFold(strings.ReplaceAll(upper, "_", ""), c.String()) {
			return c.String()
		}
	}
	return "unknown code " + upper
}
