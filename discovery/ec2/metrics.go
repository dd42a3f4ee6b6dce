package ec2

import (
	"context"
	"errors"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	awsmiddleware "github.com/aws/aws-sdk-go-v2/aws/middleware"
	"github.com/aws/aws-sdk-go-v2/aws/retry"
	"github.com/aws/smithy-go"
	"github.com/aws/smithy-go/middleware"
	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"
	"golang.org/x/time/rate"
)

// Metrics count EC2 API calls and the instances polls had to leave out. Create them once per
// process; every method is safe on a nil *Metrics.
type Metrics struct {
	calls   *prometheus.CounterVec
	errors  *prometheus.CounterVec
	dropped *prometheus.CounterVec
}

// NewMetrics creates the metrics and registers them with reg (nil: not registered).
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		calls: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "dcv_resolver_ec2_api_calls_total",
			Help: "EC2 API call attempts (retries included), by operation and region.",
		}, []string{"operation", "region"}),
		errors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "dcv_resolver_ec2_api_errors_total",
			Help: "Failed EC2 API call attempts by operation, region and error code (RequestLimitExceeded is throttling).",
		}, []string{"operation", "region", "code"}),
		dropped: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "dcv_resolver_dropped_instances_total",
			Help: "Tagged instances left out of a poll, by region and reason (bad-tag, no-address).",
		}, []string{"region", "reason"}),
	}
	if reg != nil {
		reg.MustRegister(m.calls, m.errors, m.dropped)
	}
	return m
}

func (m *Metrics) drop(region, reason string) {
	if m != nil {
		m.dropped.WithLabelValues(region, reason).Inc()
	}
}

// authErrorCodes are the EC2/STS errors after which cached credentials are thrown away, so
// the next call fetches fresh ones (rotated instance-role keys, an expired session).
var authErrorCodes = map[string]bool{
	"AuthFailure": true, "UnauthorizedOperation": true, "RequestExpired": true,
	"ExpiredToken": true, "ExpiredTokenException": true, "InvalidClientTokenId": true,
	"SignatureDoesNotMatch": true,
}

// attemptObserver is a middleware in the retry loop: it sees every attempt of every call, counts
// it, logs throttling (at most every 10s), and invalidates the credential cache on auth errors.
type attemptObserver struct {
	region  string
	metrics *Metrics
	creds   aws.CredentialsProvider
	log     *zap.Logger
	warn    *rate.Sometimes
}

func (*attemptObserver) ID() string { return "dcvResolverAttemptObserver" }

func (o *attemptObserver) HandleFinalize(ctx context.Context, in middleware.FinalizeInput, next middleware.FinalizeHandler) (
	middleware.FinalizeOutput, middleware.Metadata, error,
) {
	out, md, err := next.HandleFinalize(ctx, in)
	op := awsmiddleware.GetOperationName(ctx)
	if o.metrics != nil {
		o.metrics.calls.WithLabelValues(op, o.region).Inc()
	}
	if err == nil {
		return out, md, err
	}
	code := "transport"
	var apiErr smithy.APIError
	switch {
	case errors.As(err, &apiErr):
		code = apiErr.ErrorCode()
	case errors.Is(err, context.DeadlineExceeded), errors.Is(err, context.Canceled):
		code = "canceled"
	}
	if code == "DryRunOperation" {
		return out, md, err // the answer a permission check hopes for
	}
	if o.metrics != nil {
		o.metrics.errors.WithLabelValues(op, o.region, code).Inc()
	}
	if _, throttled := retry.DefaultThrottleErrorCodes[code]; throttled {
		o.warn.Do(func() {
			o.log.Warn("EC2 is throttling us; backing off (EC2 allows about 20 DescribeInstances per second per account and region)",
				zap.String("operation", op), zap.String("code", code))
		})
	}
	if authErrorCodes[code] {
		if c, ok := o.creds.(*aws.CredentialsCache); ok {
			c.Invalidate()
		}
	}
	return out, md, err
}

// instrument adds the attempt observer to a client's middleware stack, inside the retry loop.
func instrument(region string, m *Metrics, creds aws.CredentialsProvider, log *zap.Logger) func(*middleware.Stack) error {
	o := &attemptObserver{region: region, metrics: m, creds: creds, log: log, warn: &rate.Sometimes{Interval: 10 * time.Second}}
	return func(s *middleware.Stack) error {
		return s.Finalize.Insert(o, "Retry", middleware.After)
	}
}
