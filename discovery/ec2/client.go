package ec2

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/aws/retry"
	awshttp "github.com/aws/aws-sdk-go-v2/aws/transport/http"
	"github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/credentials/stscreds"
	awsec2 "github.com/aws/aws-sdk-go-v2/service/ec2"
	"github.com/aws/aws-sdk-go-v2/service/sts"
	"github.com/aws/smithy-go"
	"github.com/aws/smithy-go/logging"
	"go.uber.org/zap"
)

// ClientConfig says how to reach EC2: which regions, through which endpoint, as whom, and how
// patiently.
type ClientConfig struct {
	// Regions to describe. Empty means the one region of the AWS environment (AWS_REGION, the
	// shared config) or, failing that, the instance's own region from IMDSv2.
	Regions []string
	// Endpoint overrides the EC2 endpoint, e.g. a VPC interface endpoint. Empty: the default.
	Endpoint string
	// AssumeRoleARN, when set, is assumed through STS for every call (fleets in another account).
	AssumeRoleARN string
	// CallTimeout bounds one HTTP attempt of one API call.
	CallTimeout time.Duration
	// MaxAttempts is how often the standard retryer tries a call (throttling and 5xx are retried
	// with exponential back-off); MaxBackoff caps the wait between attempts.
	MaxAttempts int
	MaxBackoff  time.Duration
}

// DefaultClientConfig returns the defaults: environment or IMDS region, the default endpoint,
// 10s per attempt, 5 attempts, back-off capped at 20s.
func DefaultClientConfig() ClientConfig {
	return ClientConfig{CallTimeout: 10 * time.Second, MaxAttempts: 5, MaxBackoff: 20 * time.Second}
}

// LoadAWSConfig loads credentials and the region chain the way the AWS CLI does, adding the
// instance's region from IMDSv2 and an assumed role when configured. It fails when no region
// can be found at all.
func LoadAWSConfig(ctx context.Context, c ClientConfig) (aws.Config, error) {
	opts := []func(*config.LoadOptions) error{
		config.WithEC2IMDSRegion(),
		config.WithHTTPClient(awshttp.NewBuildableClient().WithTimeout(c.CallTimeout)),
		// Each client built from this config gets its own retryer, hence its own retry quota.
		config.WithRetryer(c.NewRetryer),
	}
	if len(c.Regions) > 0 {
		// A region is needed for STS and IMDS-free start-up; each Source sets its own.
		opts = append(opts, config.WithRegion(c.Regions[0]))
	}
	const noRegion = "no AWS region: set [ec2] regions or AWS_REGION, or run on an EC2 instance whose metadata service (IMDSv2) is reachable"
	cfg, err := config.LoadDefaultConfig(ctx, opts...)
	var opErr *smithy.OperationError
	switch {
	case errors.As(err, &opErr) && opErr.ServiceID == "ec2imds":
		return aws.Config{}, fmt.Errorf("%s: %w", noRegion, err)
	case err != nil:
		return aws.Config{}, fmt.Errorf("load AWS config: %w", err)
	case cfg.Region == "":
		return aws.Config{}, errors.New(noRegion)
	}
	cfg.HTTPClient = guardBodies(cfg.HTTPClient)
	if c.AssumeRoleARN != "" {
		provider := stscreds.NewAssumeRoleProvider(sts.NewFromConfig(cfg), c.AssumeRoleARN,
			func(o *stscreds.AssumeRoleOptions) { o.RoleSessionName = "dcv-ec2-resolver" })
		cfg.Credentials = aws.NewCredentialsCache(provider)
	}
	return cfg, nil
}

// regions returns the regions to poll: the configured ones, else the region of cfg.
func (c ClientConfig) regions(cfg aws.Config) []string {
	if len(c.Regions) > 0 {
		return c.Regions
	}
	return []string{cfg.Region}
}

// RegionClient is the EC2 client of one region.
type RegionClient struct {
	Region string
	Client *awsec2.Client
}

// NewClients returns one EC2 client per region to poll, in the configured order. Each has
// its own retryer, so one region's throttling does not spend another's retry quota. Every
// attempt is counted in m (may be nil), throttling is logged, and an authentication error
// discards the cached credentials so the next call fetches fresh ones.
func NewClients(cfg aws.Config, c ClientConfig, m *Metrics, log *zap.Logger) []RegionClient {
	if log == nil {
		log = zap.NewNop()
	}
	var clients []RegionClient
	for _, region := range c.regions(cfg) {
		clients = append(clients, RegionClient{Region: region, Client: awsec2.NewFromConfig(cfg, func(o *awsec2.Options) {
			o.Region = region
			if c.Endpoint != "" {
				o.BaseEndpoint = aws.String(c.Endpoint)
			}
			o.Logger = sdkLogger(log)
			o.APIOptions = append(o.APIOptions, instrument(region, m, cfg.Credentials, log.With(zap.String("region", region))))
		})})
	}
	return clients
}

// NewRetryer returns the retryer every EC2 call uses: the SDK's standard one (exponential
// back-off with jitter; throttling and 5xx retried; a retry quota), with our attempts and
// back-off cap.
func (c ClientConfig) NewRetryer() aws.Retryer {
	return retry.NewStandard(func(o *retry.StandardOptions) {
		o.MaxAttempts = c.MaxAttempts
		o.MaxBackoff = c.MaxBackoff
	})
}

// sdkLogger sends the SDK's own log lines (warnings about retries and responses) to zap, so
// that they reach the journal as JSON like everything else.
func sdkLogger(log *zap.Logger) logging.Logger {
	log = log.Named("sdk")
	return logging.LoggerFunc(func(c logging.Classification, format string, v ...any) {
		msg := fmt.Sprintf(format, v...)
		if c == logging.Warn {
			log.Warn(msg)
			return
		}
		log.Debug(msg)
	})
}
