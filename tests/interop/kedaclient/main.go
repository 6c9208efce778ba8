// Command kedaclient is an independent KEDA-like client for prewarm's external scaler.
//
// It is built with grpc-go from proto/externalscaler.proto (KEDA's wire contract) and
// behaves like KEDA v2.20's external / external-push scaler plus the HPA's AverageValue
// math, so the Python server is checked by a different gRPC implementation.
//
// Output: one JSON object per line on stdout. Exit status: 0 all good, 1 an RPC failed or
// an answer broke the contract, 2 transport error (server unreachable / Unavailable).
//
// Modes:
//
//	cycle   (default) -polls poll cycles, then both streams
//	poll    only the poll cycles
//	streams only StreamIsActive and StreamMetricSpec
//	codes   missing / empty / unknown / hostile model names against every RPC
package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"math"
	"net"
	"os"
	"sort"
	"strings"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/status"

	pb "prewarminterop/externalscaler"
)

const (
	exitOK        = 0
	exitFailed    = 1
	exitTransport = 2
	maxMsgChars   = 400 // status messages are truncated in the output (hostile echoes)
)

// kvFlag collects repeatable -metadata k=v flags.
type kvFlag map[string]string

func (m kvFlag) String() string { return fmt.Sprint(map[string]string(m)) }

func (m kvFlag) Set(s string) error {
	i := strings.IndexByte(s, '=')
	if i <= 0 {
		return fmt.Errorf("want key=value, got %q", s)
	}
	m[s[:i]] = s[i+1:]
	return nil
}

type options struct {
	addr, model, modelKey, name, namespace, mode string
	polls                                        int
	interval, rpcTimeout, streamWait             time.Duration
	streamMessages                               int
	tlsOn, unsafeSSL                             bool
	ca, cert, key, serverName                    string
	metadata                                     kvFlag
	noExtra                                      bool
	currentReplicas, minReplicas, maxReplicas    int64
	tolerance                                    float64
	longLen                                      int
	codesMetricPrefix                            string
}

func parseFlags() *options {
	o := &options{metadata: kvFlag{}}
	flag.StringVar(&o.addr, "addr", "127.0.0.1:9090", "scalerAddress host:port")
	flag.StringVar(&o.model, "model", "demo", "trigger metadata model")
	flag.StringVar(&o.modelKey, "model-key", "model", "metadata key that names the model")
	flag.StringVar(&o.name, "name", "interop-so", "ScaledObject name")
	flag.StringVar(&o.namespace, "namespace", "default", "ScaledObject namespace")
	flag.StringVar(&o.mode, "mode", "cycle", "cycle | poll | streams | codes")
	flag.IntVar(&o.polls, "polls", 3, "poll cycles")
	flag.DurationVar(&o.interval, "interval", time.Second, "pause between poll cycles (KEDA pollingInterval)")
	flag.DurationVar(&o.rpcTimeout, "rpc-timeout", 3*time.Second, "unary deadline (KEDA's HPA path: 3s); 0 = none")
	flag.DurationVar(&o.streamWait, "stream-wait", 5*time.Second, "deadline for reading stream messages")
	flag.IntVar(&o.streamMessages, "stream-messages", 1, "messages to read from each stream before cancelling")
	flag.BoolVar(&o.tlsOn, "tls", false, "enableTLS")
	flag.BoolVar(&o.unsafeSSL, "unsafe-ssl", false, "unsafeSsl: skip server certificate verification")
	flag.StringVar(&o.ca, "ca", "", "caCert PEM file (enables TLS)")
	flag.StringVar(&o.cert, "cert", "", "tlsClientCert PEM file (TLS with -key)")
	flag.StringVar(&o.key, "key", "", "tlsClientKey PEM file (TLS with -cert)")
	flag.StringVar(&o.serverName, "server-name", "", "TLS server name (default: host of -addr, as KEDA)")
	flag.Var(o.metadata, "metadata", "extra trigger metadata key=value (repeatable; overrides defaults)")
	flag.BoolVar(&o.noExtra, "no-extra", false, "do not add the default unknown metadata key")
	flag.Int64Var(&o.currentReplicas, "current-replicas", 1, "replicas the simulated HPA currently has")
	flag.Int64Var(&o.minReplicas, "min-replicas", 0, "ScaledObject minReplicaCount")
	flag.Int64Var(&o.maxReplicas, "max-replicas", 100, "ScaledObject maxReplicaCount")
	flag.Float64Var(&o.tolerance, "tolerance", 0.1, "HPA tolerance")
	flag.IntVar(&o.longLen, "long-len", 10000, "length of the very long hostile model name")
	flag.StringVar(&o.codesMetricPrefix, "codes-metric-prefix", "prewarm-", "codes mode: GetMetrics metricName = prefix+model")
	flag.Parse()
	return o
}

// ---------------------------------------------------------------- output

type reporter struct {
	enc       *json.Encoder
	failed    bool
	transport bool
}

func (r *reporter) emit(v interface{}) {
	if err := r.enc.Encode(v); err != nil {
		fmt.Fprintln(os.Stderr, "kedaclient: write:", err)
		os.Exit(exitFailed)
	}
}

// rpcError reports a failed RPC; Unavailable means the server was not reachable.
func (r *reporter) rpcError(poll int, rpc string, err error) {
	st := status.Convert(err)
	if st.Code() == codes.Unavailable {
		r.transport = true
	}
	r.failed = true
	r.emit(map[string]interface{}{
		"kind": "error", "poll": poll, "rpc": rpc,
		"code": st.Code().String(), "message": truncate(st.Message()),
	})
}

func truncate(s string) string {
	if len(s) <= maxMsgChars {
		return s
	}
	return s[:maxMsgChars] + fmt.Sprintf("...(%d bytes)", len(s))
}

// ---------------------------------------------------------------- connection

func dial(o *options) (*grpc.ClientConn, error) {
	host, _, err := net.SplitHostPort(o.addr)
	if err != nil {
		return nil, fmt.Errorf("-addr %q: %w", o.addr, err)
	}
	// Like KEDA: one channel, dns:/// resolver, round_robin, no keepalive, no retry policy.
	opts := []grpc.DialOption{
		grpc.WithDefaultServiceConfig(`{"loadBalancingConfig":[{"round_robin":{}}]}`),
	}
	if o.tlsOn || o.ca != "" || (o.cert != "" && o.key != "") {
		cfg, err := tlsConfig(o, host)
		if err != nil {
			return nil, err
		}
		opts = append(opts, grpc.WithTransportCredentials(credentials.NewTLS(cfg)))
	} else {
		opts = append(opts, grpc.WithInsecure())
	}
	return grpc.Dial("dns:///"+o.addr, opts...)
}

func tlsConfig(o *options, host string) (*tls.Config, error) {
	cfg := &tls.Config{MinVersion: tls.VersionTLS12, ServerName: host, InsecureSkipVerify: o.unsafeSSL}
	if o.serverName != "" {
		cfg.ServerName = o.serverName
	}
	if o.ca != "" {
		pem, err := os.ReadFile(o.ca)
		if err != nil {
			return nil, err
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("-ca %s: no PEM certificate", o.ca)
		}
		cfg.RootCAs = pool
	}
	if o.cert != "" && o.key != "" {
		pair, err := tls.LoadX509KeyPair(o.cert, o.key)
		if err != nil {
			return nil, err
		}
		cfg.Certificates = []tls.Certificate{pair}
	}
	return cfg, nil
}

// ---------------------------------------------------------------- refs

// refFor builds the ScaledObjectRef KEDA sends: the trigger's metadata verbatim, which
// always includes scalerAddress. model==nil leaves the model key out entirely.
func refFor(o *options, model *string) *pb.ScaledObjectRef {
	md := map[string]string{"scalerAddress": o.addr}
	if o.tlsOn {
		md["enableTLS"] = "true"
	}
	if !o.noExtra {
		md["interopUnknownKey"] = "servers-must-tolerate-this"
	}
	if model != nil {
		md[o.modelKey] = *model
	}
	for k, v := range o.metadata {
		md[k] = v
	}
	if model == nil {
		delete(md, o.modelKey)
	}
	return &pb.ScaledObjectRef{Name: o.name, Namespace: o.namespace, ScalerMetadata: md}
}

func (o *options) ctx() (context.Context, context.CancelFunc) {
	if o.rpcTimeout <= 0 {
		return context.WithCancel(context.Background())
	}
	return context.WithTimeout(context.Background(), o.rpcTimeout)
}

// ---------------------------------------------------------------- KEDA value rules

type specOut struct {
	MetricName      string  `json:"metricName"`
	TargetSize      int64   `json:"targetSize"`
	TargetSizeFloat float64 `json:"targetSizeFloat"`
	Target          float64 `json:"target"`
}

// kedaTarget: targetSizeFloat if > 0 else targetSize (KEDA >= 2.17).
func kedaTarget(s *pb.MetricSpec) float64 {
	if s.GetTargetSizeFloat() > 0 {
		return s.GetTargetSizeFloat()
	}
	return float64(s.GetTargetSize())
}

// kedaValue: metricValueFloat if > 0 else metricValue; NaN, +-Inf and negatives -> 0;
// rounded to 3 decimals (milli-units), as KEDA 2.20 builds the external metric.
func kedaValue(v *pb.MetricValue) float64 {
	x := float64(v.GetMetricValue())
	if f := v.GetMetricValueFloat(); f > 0 {
		x = f
	}
	if math.IsNaN(x) || math.IsInf(x, 0) || x < 0 {
		return 0
	}
	return math.Round(x*1000) / 1000
}

func specsOf(resp *pb.GetMetricSpecResponse) []specOut {
	out := make([]specOut, 0, len(resp.GetMetricSpecs()))
	for _, s := range resp.GetMetricSpecs() {
		out = append(out, specOut{s.GetMetricName(), s.GetTargetSize(), s.GetTargetSizeFloat(), kedaTarget(s)})
	}
	return out
}

// hpaDesired is the HPA replica calculator for an external AverageValue metric:
// ratio = value / (target x current); inside the tolerance band keep current, else
// ceil(value / target). Computed in milli-units like resource.Quantity.
func hpaDesired(value, target float64, current int64, tolerance float64) int64 {
	usage := math.Round(value * 1000)
	tgt := math.Trunc(target * 1000)
	if current > 0 {
		ratio := usage / (tgt * float64(current))
		if math.Abs(ratio-1) <= tolerance {
			return current
		}
	}
	return int64(math.Ceil(usage / tgt))
}

func clamp(x, lo, hi int64) int64 {
	if x < lo {
		return lo
	}
	if x > hi {
		return hi
	}
	return x
}

// ---------------------------------------------------------------- poll cycle

type metricOut struct {
	Kind             string   `json:"kind"`
	Poll             int      `json:"poll"`
	MetricName       string   `json:"metricName"`
	HPAMetricName    string   `json:"hpaMetricName"`
	TargetSize       int64    `json:"targetSize"`
	TargetSizeFloat  float64  `json:"targetSizeFloat"`
	Target           float64  `json:"target"`
	ValueCount       int      `json:"valueCount"`
	ValueNames       []string `json:"valueNames"`
	MetricValue      int64    `json:"metricValue"`
	MetricValueFloat float64  `json:"metricValueFloat"`
	Value            float64  `json:"value"`
	Active           bool     `json:"active"`
	CurrentReplicas  int64    `json:"currentReplicas"`
	Desired          *int64   `json:"desired"`
	Problems         []string `json:"problems"`
}

func runPolls(c pb.ExternalScalerClient, o *options, r *reporter) {
	model := o.model
	ref := refFor(o, &model)
	for poll := 1; poll <= o.polls; poll++ {
		if poll > 1 {
			time.Sleep(o.interval)
		}
		if !pollOnce(c, o, r, ref, poll) && r.transport {
			return
		}
	}
}

// withRetry mirrors KEDA: an error is retried once at once.
func withRetry(f func() error) error {
	if err := f(); err != nil {
		return f()
	}
	return nil
}

func pollOnce(c pb.ExternalScalerClient, o *options, r *reporter, ref *pb.ScaledObjectRef, poll int) bool {
	var specResp *pb.GetMetricSpecResponse
	err := withRetry(func() (err error) {
		ctx, cancel := o.ctx()
		defer cancel()
		specResp, err = c.GetMetricSpec(ctx, ref)
		return err
	})
	if err != nil {
		r.rpcError(poll, "GetMetricSpec", err)
		return false
	}
	specs := specsOf(specResp)
	r.emit(map[string]interface{}{"kind": "spec", "poll": poll, "specs": specs})
	if len(specs) == 0 {
		r.failed = true
		r.emit(map[string]interface{}{"kind": "error", "poll": poll, "rpc": "GetMetricSpec",
			"code": "OK", "message": "no metric specs returned"})
		return false
	}
	anyActive, maxDesired, ok := false, int64(0), true
	for i, s := range specResp.GetMetricSpecs() {
		m, good := pollMetric(c, o, r, ref, poll, i, s)
		if !good {
			ok = false
			continue
		}
		anyActive = anyActive || m.Active
		if m.Desired != nil && *m.Desired > maxDesired {
			maxDesired = *m.Desired
		}
	}
	if !ok {
		return false
	}
	// KEDA + HPA (ignoring behavior): inactive everywhere with minReplicaCount 0 -> 0 after
	// cooldown; otherwise max over metrics clamped to [max(min,1), max].
	replicas := clamp(maxDesired, max64(o.minReplicas, 1), o.maxReplicas)
	if !anyActive && o.minReplicas == 0 {
		replicas = 0
	}
	r.emit(map[string]interface{}{"kind": "decision", "poll": poll, "active": anyActive,
		"desired": maxDesired, "replicas": replicas})
	return true
}

func max64(a, b int64) int64 {
	if a > b {
		return a
	}
	return b
}

func pollMetric(c pb.ExternalScalerClient, o *options, r *reporter, ref *pb.ScaledObjectRef,
	poll, idx int, s *pb.MetricSpec) (*metricOut, bool) {
	var vals *pb.GetMetricsResponse
	err := withRetry(func() (err error) {
		ctx, cancel := o.ctx()
		defer cancel()
		// KEDA sends the spec's metricName back without its "sN-" prefix.
		vals, err = c.GetMetrics(ctx, &pb.GetMetricsRequest{ScaledObjectRef: ref, MetricName: s.GetMetricName()})
		return err
	})
	if err != nil {
		r.rpcError(poll, "GetMetrics", err)
		return nil, false
	}
	var act *pb.IsActiveResponse
	err = withRetry(func() (err error) {
		ctx, cancel := o.ctx()
		defer cancel()
		act, err = c.IsActive(ctx, ref)
		return err
	})
	if err != nil {
		r.rpcError(poll, "IsActive", err)
		return nil, false
	}
	m := &metricOut{
		Kind: "poll", Poll: poll, MetricName: s.GetMetricName(),
		HPAMetricName: fmt.Sprintf("s%d-%s", idx, s.GetMetricName()),
		TargetSize:    s.GetTargetSize(), TargetSizeFloat: s.GetTargetSizeFloat(), Target: kedaTarget(s),
		ValueCount: len(vals.GetMetricValues()), ValueNames: []string{},
		Active: act.GetResult(), CurrentReplicas: o.currentReplicas, Problems: []string{},
	}
	for i, v := range vals.GetMetricValues() {
		if i == 0 {
			m.MetricValue, m.MetricValueFloat = v.GetMetricValue(), v.GetMetricValueFloat()
		}
		m.ValueNames = append(m.ValueNames, v.GetMetricName())
		m.Value += kedaValue(v) // the HPA sums every returned value
	}
	m.Problems = contractProblems(s, vals)
	if m.Target > 0 {
		d := hpaDesired(m.Value, m.Target, o.currentReplicas, o.tolerance)
		m.Desired = &d
	}
	if len(m.Problems) > 0 {
		r.failed = true
	}
	r.emit(m)
	return m, true
}

// contractProblems lists what KEDA_CONTRACT.md asks of the answers and these break.
func contractProblems(s *pb.MetricSpec, vals *pb.GetMetricsResponse) []string {
	p := []string{}
	if kedaTarget(s) <= 0 {
		p = append(p, "target <= 0")
	}
	if s.GetTargetSizeFloat() > 0 && float64(s.GetTargetSize()) != math.Round(s.GetTargetSizeFloat()) {
		p = append(p, "targetSize (int64, read by KEDA < 2.17) disagrees with targetSizeFloat")
	}
	if s.GetMetricName() != strings.ToLower(s.GetMetricName()) {
		p = append(p, "metric name not lowercase")
	}
	if n := len(vals.GetMetricValues()); n != 1 {
		p = append(p, fmt.Sprintf("GetMetrics returned %d values, want exactly 1", n))
	}
	for _, v := range vals.GetMetricValues() {
		f := v.GetMetricValueFloat()
		if math.IsNaN(f) || math.IsInf(f, 0) || f < 0 {
			p = append(p, fmt.Sprintf("metricValueFloat %v", f))
		}
		if v.GetMetricValue() < 0 {
			p = append(p, "negative metricValue")
		}
		if f > 0 && float64(v.GetMetricValue()) != math.Round(f) && float64(v.GetMetricValue()) != math.Trunc(f) {
			p = append(p, "metricValue (int64) disagrees with metricValueFloat")
		}
		if f == 0 && v.GetMetricValue() != 0 {
			p = append(p, "metricValueFloat 0 but metricValue != 0: KEDA reads the int")
		}
	}
	return p
}

// ---------------------------------------------------------------- streams

func runStreams(c pb.ExternalScalerClient, o *options, r *reporter) {
	model := o.model
	ref := refFor(o, &model)
	streamIsActive(c, o, r, ref)
	streamMetricSpec(c, o, r, ref)
}

func unaryActive(c pb.ExternalScalerClient, o *options, ref *pb.ScaledObjectRef) interface{} {
	ctx, cancel := o.ctx()
	defer cancel()
	resp, err := c.IsActive(ctx, ref)
	if err != nil {
		return status.Code(err).String()
	}
	return resp.GetResult()
}

func unarySpecs(c pb.ExternalScalerClient, o *options, ref *pb.ScaledObjectRef) interface{} {
	ctx, cancel := o.ctx()
	defer cancel()
	resp, err := c.GetMetricSpec(ctx, ref)
	if err != nil {
		return status.Code(err).String()
	}
	return specsOf(resp)
}

// readStream reads up to -stream-messages messages within -stream-wait, then cancels
// (KEDA keeps the stream open; here the first message(s) are what we check).
func readStream(o *options, r *reporter, rpc string, recv func() (interface{}, error), cancel func()) ([]interface{}, time.Duration, bool) {
	defer cancel()
	start := time.Now()
	var msgs []interface{}
	var firstAt time.Duration
	for len(msgs) < o.streamMessages {
		m, err := recv()
		if err != nil {
			if len(msgs) > 0 && status.Code(err) == codes.DeadlineExceeded {
				break // got what the server had to say within the window
			}
			if errors.Is(err, io.EOF) {
				if len(msgs) > 0 {
					break
				}
				r.failed = true
				r.emit(map[string]interface{}{"kind": "error", "rpc": rpc, "code": "OK",
					"message": "server ended the stream before sending the current state"})
				return nil, 0, false
			}
			r.rpcError(0, rpc, err)
			return nil, 0, false
		}
		if len(msgs) == 0 {
			firstAt = time.Since(start)
		}
		msgs = append(msgs, m)
	}
	return msgs, firstAt, true
}

func streamIsActive(c pb.ExternalScalerClient, o *options, r *reporter, ref *pb.ScaledObjectRef) {
	before := unaryActive(c, o, ref)
	ctx, cancel := context.WithTimeout(context.Background(), o.streamWait)
	st, err := c.StreamIsActive(ctx, ref)
	if err != nil {
		cancel()
		r.rpcError(0, "StreamIsActive", err)
		return
	}
	msgs, firstAt, ok := readStream(o, r, "StreamIsActive", func() (interface{}, error) {
		m, err := st.Recv()
		if err != nil {
			return nil, err
		}
		return m.GetResult(), nil
	}, cancel)
	if !ok {
		return
	}
	r.emit(map[string]interface{}{"kind": "stream", "rpc": "StreamIsActive", "messages": msgs,
		"firstMs": firstAt.Milliseconds(), "unaryBefore": before, "unaryAfter": unaryActive(c, o, ref)})
}

func streamMetricSpec(c pb.ExternalScalerClient, o *options, r *reporter, ref *pb.ScaledObjectRef) {
	before := unarySpecs(c, o, ref)
	ctx, cancel := context.WithTimeout(context.Background(), o.streamWait)
	st, err := c.StreamMetricSpec(ctx, ref)
	if err != nil {
		cancel()
		r.rpcError(0, "StreamMetricSpec", err)
		return
	}
	msgs, firstAt, ok := readStream(o, r, "StreamMetricSpec", func() (interface{}, error) {
		m, err := st.Recv()
		if err != nil {
			return nil, err
		}
		return specsOf(m), nil
	}, cancel)
	if !ok {
		return
	}
	r.emit(map[string]interface{}{"kind": "stream", "rpc": "StreamMetricSpec", "messages": msgs,
		"firstMs": firstAt.Milliseconds(), "unaryBefore": before, "unaryAfter": unarySpecs(c, o, ref)})
}

// ---------------------------------------------------------------- codes

type codeCase struct {
	name     string
	model    *string // nil: the model key is absent
	expected []codes.Code
}

func strp(s string) *string { return &s }

func codeCases(o *options) []codeCase {
	bad := []codes.Code{codes.InvalidArgument, codes.NotFound}
	return []codeCase{
		{"missing", nil, []codes.Code{codes.InvalidArgument}},
		{"empty", strp(""), []codes.Code{codes.InvalidArgument}},
		{"unknown", strp("no-such-model-interop"), []codes.Code{codes.NotFound}},
		{"long", strp(strings.Repeat("a", o.longLen)), bad},
		{"promql-injection", strp(`x"}or vector(1)#`), bad},
		{"promql-regex", strp(`.*`), bad},
		{"newline", strp("demo\nmodel=\"x\""), bad},
		{"unicode", strp("démo-\u200b-\u202e-🚀"), bad},
		{"nul", strp("demo\x00"), bad},
		{"path-traversal", strp("../etc"), bad},
		{"path-traversal-deep", strp("../../../../etc/passwd"), bad},
	}
}

type codeOut struct {
	Kind     string   `json:"kind"`
	Case     string   `json:"case"`
	Model    *string  `json:"model"`
	ModelLen int      `json:"modelLen"`
	RPC      string   `json:"rpc"`
	Code     string   `json:"code"`
	Message  string   `json:"message"`
	Expected []string `json:"expected"`
	Pass     bool     `json:"pass"`
}

func runCodes(c pb.ExternalScalerClient, o *options, r *reporter) {
	for _, cc := range codeCases(o) {
		ref := refFor(o, cc.model)
		metricName := o.codesMetricPrefix
		if cc.model != nil {
			metricName += *cc.model
		}
		calls := []struct {
			rpc string
			do  func(ctx context.Context) error
		}{
			{"GetMetricSpec", func(ctx context.Context) error { _, err := c.GetMetricSpec(ctx, ref); return err }},
			{"GetMetrics", func(ctx context.Context) error {
				_, err := c.GetMetrics(ctx, &pb.GetMetricsRequest{ScaledObjectRef: ref, MetricName: metricName})
				return err
			}},
			{"IsActive", func(ctx context.Context) error { _, err := c.IsActive(ctx, ref); return err }},
			{"StreamIsActive", func(ctx context.Context) error {
				st, err := c.StreamIsActive(ctx, ref)
				if err == nil {
					_, err = st.Recv()
				}
				return err
			}},
			{"StreamMetricSpec", func(ctx context.Context) error {
				st, err := c.StreamMetricSpec(ctx, ref)
				if err == nil {
					_, err = st.Recv()
				}
				return err
			}},
		}
		for _, call := range calls {
			r.emit(codeCall(o, r, cc, call.rpc, call.do))
		}
	}
	// The server must still serve the real model afterwards.
	model := o.model
	r.emit(map[string]interface{}{"kind": "after", "rpc": "GetMetricSpec",
		"result": unarySpecs(c, o, refFor(o, &model))})
}

func codeCall(o *options, r *reporter, cc codeCase, rpc string, do func(context.Context) error) codeOut {
	timeout := o.rpcTimeout
	if strings.HasPrefix(rpc, "Stream") || timeout <= 0 {
		timeout = o.streamWait
	}
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	st := status.Convert(do(ctx))
	if errors.Is(st.Err(), io.EOF) {
		st = status.New(codes.OK, "stream ended with OK and no message")
	}
	out := codeOut{Kind: "code", Case: cc.name, RPC: rpc, Code: st.Code().String(),
		Message: truncate(st.Message()), Expected: []string{}}
	if cc.model != nil {
		shown := *cc.model
		if len(shown) > 64 {
			shown = shown[:64] + fmt.Sprintf("...(%d bytes)", len(*cc.model))
		}
		out.Model, out.ModelLen = &shown, len(*cc.model)
	}
	for _, e := range cc.expected {
		out.Expected = append(out.Expected, e.String())
		out.Pass = out.Pass || st.Code() == e
	}
	sort.Strings(out.Expected)
	if st.Code() == codes.Unavailable {
		r.transport = true
	}
	if !out.Pass {
		r.failed = true
	}
	return out
}

// ---------------------------------------------------------------- main

func main() {
	o := parseFlags()
	r := &reporter{enc: json.NewEncoder(os.Stdout)}
	r.enc.SetEscapeHTML(false)
	conn, err := dial(o)
	if err != nil {
		fmt.Fprintln(os.Stderr, "kedaclient: dial:", err)
		os.Exit(exitTransport)
	}
	defer conn.Close()
	c := pb.NewExternalScalerClient(conn)
	switch o.mode {
	case "cycle":
		runPolls(c, o, r)
		if !r.transport {
			runStreams(c, o, r)
		}
	case "poll":
		runPolls(c, o, r)
	case "streams":
		runStreams(c, o, r)
	case "codes":
		runCodes(c, o, r)
	default:
		fmt.Fprintf(os.Stderr, "kedaclient: unknown -mode %q\n", o.mode)
		os.Exit(exitFailed)
	}
	switch {
	case r.transport:
		os.Exit(exitTransport)
	case r.failed:
		os.Exit(exitFailed)
	}
	os.Exit(exitOK)
}
