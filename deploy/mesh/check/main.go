// Command check validates the mesh configurations of docs/mesh.md without Envoy or a
// cluster (neither can be installed here): Envoy's bootstrap is decoded strictly into
// go-control-plane's protobuf types and checked with their protoc-gen-validate rules,
// typed_config payloads included; Istio objects are decoded strictly into istio.io/api's
// protobuf types and every CEL rule (x-kubernetes-validations) of Istio's CRD is
// evaluated against them, as the Kubernetes API server would on apply.
//
// Usage: check -envoy FILE... | check -istio -crds CRD_YAML FILE...
// Prints one line per object and exits 1 on the first invalid one.
package main

import (
	"bytes"
	"errors"
	"flag"
	"fmt"
	"net/url"
	"os"
	"regexp"
	"strings"

	bootstrap "github.com/envoyproxy/go-control-plane/envoy/config/bootstrap/v3"
	// Every typed_config type the configurations use must be registered to be decoded.
	_ "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/jwt_authn/v3"
	_ "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/rbac/v3"
	_ "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/router/v3"
	_ "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	"github.com/google/cel-go/cel"
	"github.com/google/cel-go/common/types"
	"github.com/google/cel-go/common/types/ref"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protopath"
	"google.golang.org/protobuf/reflect/protorange"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/types/known/anypb"
	security "istio.io/api/security/v1beta1"
	"sigs.k8s.io/yaml"
)

func main() {
	envoy := flag.Bool("envoy", false, "the files are Envoy bootstrap configurations")
	istio := flag.Bool("istio", false, "the files hold Istio security objects")
	crds := flag.String("crds", "", "Istio's customresourcedefinitions.gen.yaml (with -istio)")
	flag.Parse()
	var err error
	switch {
	case *envoy && !*istio:
		err = each(flag.Args(), checkEnvoy)
	case *istio && !*envoy && *crds != "":
		var rules map[string]schemaNode
		if rules, err = loadCRDs(*crds); err == nil {
			err = each(flag.Args(), func(path string, data []byte) error {
				return checkIstio(path, data, rules)
			})
		}
	default:
		err = errors.New("usage: check -envoy FILE... | check -istio -crds CRD_YAML FILE...")
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "invalid:", err)
		os.Exit(1)
	}
}

func each(paths []string, check func(string, []byte) error) error {
	if len(paths) == 0 {
		return errors.New("no files given")
	}
	for _, path := range paths {
		data, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		if err := check(path, data); err != nil {
			return err
		}
	}
	return nil
}

// strict refuses unknown fields: a misspelt option must fail, not vanish.
var strict = protojson.UnmarshalOptions{DiscardUnknown: false}

func checkEnvoy(path string, data []byte) error {
	raw, err := yaml.YAMLToJSON(data)
	if err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	var config bootstrap.Bootstrap
	if err := strict.Unmarshal(raw, &config); err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	if err := validateDeep(&config); err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	fmt.Printf("ok envoy bootstrap %s\n", path)
	return nil
}

type validator interface{ ValidateAll() error }

// validateDeep runs the protoc-gen-validate rules of m and of every message packed in an
// Any inside it: ValidateAll alone stops at an Any, and typed_config is one.
func validateDeep(m proto.Message) error {
	if v, ok := m.(validator); ok {
		if err := v.ValidateAll(); err != nil {
			return fmt.Errorf("%s: %w", m.ProtoReflect().Descriptor().FullName(), err)
		}
	}
	return protorange.Range(m.ProtoReflect(), func(values protopath.Values) error {
		last := values.Index(-1)
		msg, ok := last.Value.Interface().(protoreflect.Message)
		if ok && msg.Descriptor().FullName() == "envoy.type.matcher.v3.RegexMatcher" {
			// Envoy compiles safe_regex with RE2 at load; Go's regexp is RE2 syntax.
			pattern := msg.Get(msg.Descriptor().Fields().ByName("regex")).String()
			if _, err := regexp.Compile(pattern); err != nil {
				return fmt.Errorf("%s: %w", values.Path, err)
			}
		}
		if !ok || msg.Descriptor().FullName() != "google.protobuf.Any" {
			return nil
		}
		packed, ok := msg.Interface().(*anypb.Any)
		if !ok {
			return fmt.Errorf("%s: not an Any", values.Path)
		}
		inner, err := packed.UnmarshalNew()
		if err != nil {
			return fmt.Errorf("%s: %w", values.Path, err)
		}
		if err := validateDeep(inner); err != nil {
			return fmt.Errorf("%s: %w", values.Path, err)
		}
		return protorange.Break // Range would walk the Any's bytes no further anyway
	})
}

// schemaNode is a CRD openAPIV3Schema node, as decoded YAML.
type schemaNode = map[string]any

func loadCRDs(path string) (map[string]schemaNode, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	schemas := map[string]schemaNode{}
	for _, doc := range bytes.Split(data, []byte("\n---")) {
		var crd struct {
			Spec struct {
				Group string `json:"group"`
				Names struct {
					Kind string `json:"kind"`
				} `json:"names"`
				Versions []struct {
					Name   string `json:"name"`
					Schema struct {
						OpenAPIV3Schema schemaNode `json:"openAPIV3Schema"`
					} `json:"schema"`
				} `json:"versions"`
			} `json:"spec"`
		}
		if err := yaml.Unmarshal(doc, &crd); err != nil {
			return nil, err
		}
		for _, version := range crd.Spec.Versions {
			key := crd.Spec.Group + "/" + version.Name + "/" + crd.Spec.Names.Kind
			schemas[key] = version.Schema.OpenAPIV3Schema
		}
	}
	return schemas, nil
}

func checkIstio(path string, data []byte, schemas map[string]schemaNode) error {
	for i, doc := range bytes.Split(data, []byte("\n---")) {
		var object map[string]any
		if err := yaml.Unmarshal(doc, &object); err != nil {
			return fmt.Errorf("%s #%d: %w", path, i, err)
		}
		if object == nil {
			continue
		}
		kind, _ := object["kind"].(string)
		apiVersion, _ := object["apiVersion"].(string)
		if err := decodeSpec(kind, object["spec"]); err != nil {
			return fmt.Errorf("%s #%d %s: %w", path, i, kind, err)
		}
		schema, ok := schemas[apiVersion+"/"+kind]
		if !ok {
			return fmt.Errorf("%s #%d: no CRD for %s %s", path, i, apiVersion, kind)
		}
		if err := celRules(schema, object, kind); err != nil {
			return fmt.Errorf("%s #%d: %w", path, i, err)
		}
		fmt.Printf("ok istio %s %s\n", kind, path)
	}
	return nil
}

// decodeSpec decodes spec into Istio's own message for kind, refusing unknown fields.
func decodeSpec(kind string, spec any) error {
	var message proto.Message
	switch kind {
	case "RequestAuthentication":
		message = &security.RequestAuthentication{}
	case "AuthorizationPolicy":
		message = &security.AuthorizationPolicy{}
	default:
		return fmt.Errorf("unexpected kind %q", kind)
	}
	raw, err := yaml.Marshal(spec)
	if err != nil {
		return err
	}
	if raw, err = yaml.YAMLToJSON(raw); err != nil {
		return err
	}
	return strict.Unmarshal(raw, message)
}

// celRules evaluates every x-kubernetes-validations rule of schema on the matching part
// of value, as the API server does: a rule runs only where its field is present.
func celRules(schema schemaNode, value any, where string) error {
	if value == nil {
		return nil
	}
	if rules, ok := schema["x-kubernetes-validations"].([]any); ok {
		for _, entry := range rules {
			rule, _ := entry.(map[string]any)["rule"].(string)
			if err := evaluate(rule, value); err != nil {
				return fmt.Errorf("%s: rule %q: %w", where, rule, err)
			}
		}
	}
	switch typed := value.(type) {
	case map[string]any:
		properties, _ := schema["properties"].(map[string]any)
		extra, _ := schema["additionalProperties"].(map[string]any)
		for key, child := range typed {
			if sub, ok := properties[key].(map[string]any); ok {
				if err := celRules(sub, child, where+"."+key); err != nil {
					return err
				}
			} else if extra != nil {
				if err := celRules(extra, child, where+"."+key); err != nil {
					return err
				}
			}
		}
	case []any:
		if items, ok := schema["items"].(map[string]any); ok {
			for i, child := range typed {
				if err := celRules(items, child, fmt.Sprintf("%s[%d]", where, i)); err != nil {
					return err
				}
			}
		}
	}
	return nil
}

// celEnv has `self` and the one Kubernetes CEL library function Istio's rules use,
// url(s).getScheme(), modelled on k8s.io/apiserver/pkg/cel/library (URLs).
var celEnv = mustEnv()

func mustEnv() *cel.Env {
	env, err := cel.NewEnv(
		cel.Variable("self", cel.DynType),
		cel.Function("url",
			cel.Overload("string_to_url", []*cel.Type{cel.StringType}, cel.StringType,
				cel.UnaryBinding(func(arg ref.Val) ref.Val {
					text, _ := arg.Value().(string)
					parsed, err := url.Parse(text)
					if err != nil || !parsed.IsAbs() {
						return types.NewErr("URL parse error during conversion from string: %s", text)
					}
					return types.String(text)
				}))),
		cel.Function("getScheme",
			cel.MemberOverload("url_get_scheme", []*cel.Type{cel.StringType}, cel.StringType,
				cel.UnaryBinding(func(arg ref.Val) ref.Val {
					parsed, _ := url.Parse(arg.Value().(string))
					return types.String(strings.ToLower(parsed.Scheme))
				}))),
	)
	if err != nil {
		panic(err)
	}
	return env
}

func evaluate(rule string, self any) error {
	ast, issues := celEnv.Compile(rule)
	if issues != nil && issues.Err() != nil {
		return issues.Err()
	}
	program, err := celEnv.Program(ast)
	if err != nil {
		return err
	}
	out, _, err := program.Eval(map[string]any{"self": self})
	if err != nil {
		return err
	}
	if out != types.True {
		return errors.New("evaluates to false")
	}
	return nil
}
