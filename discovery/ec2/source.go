// Package ec2 discovers DCV hosts by describing EC2 instances that carry the session tag. One
// Source serves one region; the resolve package polls it and asks it about unknown sessions.
package ec2

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"

	"github.com/aws/aws-sdk-go-v2/aws"
	awsec2 "github.com/aws/aws-sdk-go-v2/service/ec2"
	"github.com/aws/aws-sdk-go-v2/service/ec2/types"
	"github.com/aws/smithy-go"
	"go.uber.org/zap"

	"github.com/dcv-ec2-resolver/dcv-ec2-resolver/discovery"
)

// DescribeInstancesAPIClient is the one EC2 call a Source makes. *ec2.Client satisfies it, and
// it is exactly what the SDK's DescribeInstances paginator takes.
type DescribeInstancesAPIClient interface {
	DescribeInstances(ctx context.Context, in *awsec2.DescribeInstancesInput, optFns ...func(*awsec2.Options)) (*awsec2.DescribeInstancesOutput, error)
}

// pageSize is the largest page DescribeInstances returns; a full poll of N instances costs
// ceil(N/pageSize) calls.
const pageSize = 1000

// lookupMaxPages bounds what one on-miss lookup may spend; the next full poll finds the rest.
const lookupMaxPages = 3

// Filter is an extra server-side DescribeInstances filter, such as tag:dcv:fleet = prod.
type Filter struct {
	Name   string   `toml:"name"`
	Values []string `toml:"values"`
}

// Options say which instances a Source reports and how it turns them into targets.
type Options struct {
	// Filters narrow every DescribeInstances call, on top of the session tag and running state.
	Filters []Filter
	// Address chooses the instance address handed to the gateway.
	Address AddressType
	// Tags and Defaults describe how tags become target fields.
	Tags     discovery.TagKeys
	Defaults discovery.Defaults
	// NewRetryer, when set, gives every full poll a retryer of its own: a poll that runs its
	// retry quota dry fails, and the next one starts with a full quota.
	NewRetryer func() aws.Retryer
	// Metrics counts dropped instances; nil records nothing.
	Metrics *Metrics
}

// Source lists the tagged, running instances of one region.
type Source struct {
	region string
	api    DescribeInstancesAPIClient
	opts   Options
	log    *zap.Logger

	mu sync.Mutex
	// fellBack holds the instances already logged as having no address of the chosen kind,
	// so the warning is said once per instance rather than once per poll.
	fellBack map[string]struct{}
}

// NewSource returns a Source that describes instances in region through api. A nil logger
// discards logs.
func NewSource(region string, api DescribeInstancesAPIClient, opts Options, log *zap.Logger) *Source {
	if log == nil {
		log = zap.NewNop()
	}
	if opts.Address == "" {
		opts.Address = AddressPrivateDNS
	}
	return &Source{
		region:   region,
		api:      api,
		opts:     opts,
		log:      log.With(zap.String("region", region)),
		fellBack: make(map[string]struct{}),
	}
}

// Region is the AWS region this Source describes.
func (s *Source) Region() string { return s.region }

// Poll describes every running instance carrying the session tag and returns one target per
// usable instance. Instances with bad tags are dropped with a warning; only a failed EC2 call
// fails the poll.
func (s *Source) Poll(ctx context.Context) ([]discovery.Target, error) {
	filters := s.filters(types.Filter{Name: aws.String("tag-key"), Values: []string{s.opts.Tags.SessionID}})
	var targets []discovery.Target
	seen := make(map[string]struct{}, len(s.fellBack))
	var optFns []func(*awsec2.Options)
	if s.opts.NewRetryer != nil {
		r := s.opts.NewRetryer()
		optFns = append(optFns, func(o *awsec2.Options) { o.Retryer = r })
	}
	err := s.describe(ctx, filters, 0, optFns, func(inst *types.Instance) {
		if t, ok := s.target(inst, seen); ok {
			targets = append(targets, t)
		}
	})
	if err != nil {
		return nil, err
	}
	// Forget fallback warnings of instances that are gone, so the set does not grow forever.
	s.mu.Lock()
	for id := range s.fellBack {
		if _, ok := seen[id]; !ok {
			delete(s.fellBack, id)
		}
	}
	s.mu.Unlock()
	return targets, nil
}

// Lookup describes the running instances whose session tag lists sessionID and returns them.
// It is the on-miss path: a host tagged since the last poll is found without waiting for the
// next one.
func (s *Source) Lookup(ctx context.Context, sessionID string) ([]discovery.Target, error) {
	filters := s.filters(types.Filter{
		Name:   aws.String("tag:" + s.opts.Tags.SessionID),
		Values: TagValuePatterns(sessionID),
	})
	var targets []discovery.Target
	err := s.describe(ctx, filters, lookupMaxPages, nil, func(inst *types.Instance) {
		t, ok := s.target(inst, nil)
		if ok && t.Serves(sessionID) {
			targets = append(targets, t)
		}
	})
	return targets, err
}

func (s *Source) filters(first types.Filter) []types.Filter {
	fs := make([]types.Filter, 0, 2+len(s.opts.Filters))
	fs = append(fs, first, types.Filter{Name: aws.String("instance-state-name"), Values: []string{"running"}})
	for _, f := range s.opts.Filters {
		fs = append(fs, types.Filter{Name: aws.String(f.Name), Values: f.Values})
	}
	return fs
}

// describe pages through DescribeInstances with the SDK's paginator, calling fn for every
// instance. maxPages > 0 stops early.
func (s *Source) describe(ctx context.Context, filters []types.Filter, maxPages int, optFns []func(*awsec2.Options), fn func(*types.Instance)) error {
	p := awsec2.NewDescribeInstancesPaginator(s.api, &awsec2.DescribeInstancesInput{
		Filters:    filters,
		MaxResults: aws.Int32(pageSize),
	})
	for pages := 0; p.HasMorePages() && (maxPages == 0 || pages < maxPages); pages++ {
		out, err := p.NextPage(ctx, optFns...)
		if err != nil {
			return fmt.Errorf("describe instances in %s: %w", s.region, err)
		}
		for i := range out.Reservations {
			for j := range out.Reservations[i].Instances {
				fn(&out.Reservations[i].Instances[j])
			}
		}
	}
	return nil
}

// target converts an instance, logging why when it cannot be used. seen, when not nil,
// collects the instance IDs reported.
func (s *Source) target(inst *types.Instance, seen map[string]struct{}) (discovery.Target, bool) {
	id := aws.ToString(inst.InstanceId)
	if seen != nil {
		seen[id] = struct{}{}
	}
	if inst.State != nil && inst.State.Name != types.InstanceStateNameRunning {
		return discovery.Target{}, false // the state filter makes this rare: a change mid-page
	}
	tags := make(map[string]string, len(inst.Tags))
	for _, tg := range inst.Tags {
		tags[aws.ToString(tg.Key)] = aws.ToString(tg.Value)
	}
	t := discovery.Target{
		InstanceID: id,
		Region:     s.region,
		LaunchTime: aws.ToTime(inst.LaunchTime),
	}
	if err := discovery.ApplyTags(&t, tags, s.opts.Tags, s.opts.Defaults); err != nil {
		s.log.Warn("dropping instance with a bad tag", zap.String("instance", id), zap.Error(err))
		s.opts.Metrics.drop(s.region, "bad-tag")
		return discovery.Target{}, false
	}
	host, fellBack := s.opts.Address.pick(inst)
	if host == "" {
		s.log.Warn("dropping instance without an address", zap.String("instance", id),
			zap.String("address", string(s.opts.Address)))
		s.opts.Metrics.drop(s.region, "no-address")
		return discovery.Target{}, false
	}
	if fellBack {
		s.noteFallback(id, host)
	}
	t.Host = host
	return t, true
}

func (s *Source) noteFallback(id, host string) {
	s.mu.Lock()
	_, said := s.fellBack[id]
	s.fellBack[id] = struct{}{}
	s.mu.Unlock()
	if !said {
		s.log.Warn("instance has no address of the configured kind; using its private IP",
			zap.String("instance", id), zap.String("address", string(s.opts.Address)), zap.String("private_ip", host))
	}
}

// TagValuePatterns returns EC2 filter values that match a session tag listing sessionID as a
// whole entry: alone, first, last or in the middle, separated by a comma or a space. The ID is
// escaped so that "*", "?" and "\" in it match only themselves and can never widen the filter.
func TagValuePatterns(sessionID string) []string {
	id := EscapeFilterValue(sessionID)
	seps := []string{",", " "}
	out := []string{id}
	for _, a := range seps {
		out = append(out, id+a+"*", "*"+a+id)
		for _, b := range seps {
			out = append(out, "*"+a+id+b+"*")
		}
	}
	return out
}

// EscapeFilterValue escapes the EC2 filter wildcards "*" and "?" and the escape character
// itself, so the value matches literally.
func EscapeFilterValue(v string) string {
	if !strings.ContainsAny(v, `*?\`) {
		return v
	}
	var b strings.Builder
	b.Grow(len(v) + 4)
	for _, r := range v {
		if r == '*' || r == '?' || r == '\\' {
			b.WriteByte('\\')
		}
		b.WriteRune(r)
	}
	return b.String()
}

// ErrPermissionDenied is wrapped by CheckPermission when EC2 refuses DescribeInstances.
var ErrPermissionDenied = errors.New("not authorized to call ec2:DescribeInstances")

// CheckPermission asks EC2 whether the credentials may call DescribeInstances, without
// describing anything (DryRun). It returns nil when they may, an error wrapping
// ErrPermissionDenied when they may not, and any other failure as it is.
func (s *Source) CheckPermission(ctx context.Context) error {
	_, err := s.api.DescribeInstances(ctx, &awsec2.DescribeInstancesInput{DryRun: aws.Bool(true), MaxResults: aws.Int32(5)})
	var apiErr smithy.APIError
	if errors.As(err, &apiErr) {
		switch apiErr.ErrorCode() {
		case "DryRunOperation":
			return nil
		case "UnauthorizedOperation", "AccessDenied", "AccessDeniedException":
			return fmt.Errorf("describe instances in %s: %w: %s", s.region, ErrPermissionDenied, apiErr.ErrorCode())
		}
	}
	if err == nil {
		return fmt.Errorf("describe instances in %s: DryRun call succeeded, which EC2 never does; is the endpoint really EC2?", s.region)
	}
	return fmt.Errorf("describe instances in %s: %w", s.region, err)
}
