package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"runtime/pprof"
	"strconv"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	awsec2 "github.com/aws/aws-sdk-go-v2/service/ec2"
	"github.com/aws/aws-sdk-go-v2/service/ec2/types"

	"github.com/dcv-ec2-resolver/dcv-ec2-resolver/discovery"
	"github.com/dcv-ec2-resolver/dcv-ec2-resolver/discovery/ec2"
	"github.com/dcv-ec2-resolver/dcv-ec2-resolver/resolve"
)

// pollResult is the cost of one full refresh of a region, measured in the harness's own
// process with the daemon's code: ec2.LoadAWSConfig and ec2.NewClients for the SDK client,
// ec2.Source.Poll, then resolve.Index.Publish. The fake EC2 endpoint runs in another process,
// so the CPU times below are the resolver side's alone (GC included).
type pollResult struct {
	Instances, Sessions int
	// Calls is how many DescribeInstances requests the poll made; WantCalls is ceil(N/1000).
	Calls, WantCalls int
	// Poll is Source.Poll as the daemon runs it: the SDK's paging and decoding, then turning
	// instances into targets.
	PollWall, PollCPU time.Duration
	// SDK is the SDK paging through the same filters and decoding every page, nothing else.
	SDKWall, SDKCPU time.Duration
	// Convert is Source.Poll over pages the SDK has already decoded (replayed from memory):
	// turning instances into targets, nothing else.
	ConvertWall, ConvertCPU time.Duration
	// Publish is the index build: merging the targets into a new snapshot.
	PublishWall, PublishCPU time.Duration
	// Retained is the heap the published index keeps alive, targets included.
	Retained int64
}

// BuildCPU is the index build beyond the SDK's decoding: converting instances into targets
// and publishing them.
func (r *pollResult) BuildCPU() time.Duration { return r.ConvertCPU + r.PublishCPU }

func (r *pollResult) BytesPerSession() float64 { return float64(r.Retained) / float64(r.Sessions) }

// measurePoll measures one full refresh of the n-instance fleet served by fake. With
// profileDir set, it writes CPU and heap profiles of the poll and publish there.
func measurePoll(ctx context.Context, fake *fakeEC2, n int, profileDir string) (*pollResult, error) {
	cc := ec2.DefaultClientConfig()
	cc.Regions, cc.Endpoint = []string{benchRegion}, fake.url
	awsCfg, err := ec2.LoadAWSConfig(ctx, cc)
	if err != nil {
		return nil, err
	}
	client := ec2.NewClients(awsCfg, cc, nil, nil)[0].Client
	opts := ec2.Options{Tags: discovery.DefaultTagKeys(), Defaults: discovery.DefaultDefaults(), NewRetryer: cc.NewRetryer}
	res := &pollResult{Instances: n, WantCalls: (n + 999) / 1000}

	// 1. The SDK alone (which also warms the client and its connection up); 2. converting
	// decoded pages into targets, without the SDK.
	if err := measureParts(ctx, client, opts, n, res); err != nil {
		return nil, err
	}

	// 3. Poll and Publish as the daemon runs them.
	var stop func()
	if profileDir != "" {
		if stop, err = startCPUProfile(filepath.Join(profileDir, fmt.Sprintf("poll-%d.cpu.pprof", n))); err != nil {
			return nil, err
		}
	}
	calls0, err := fake.calls()
	if err != nil {
		return nil, err
	}
	runtime.GC()
	err = pollAndPublish(ctx, ec2.NewSource(benchRegion, client, opts, nil), res)
	if stop != nil {
		stop()
	}
	if err != nil {
		return nil, err
	}
	calls1, err := fake.calls()
	if err != nil {
		return nil, err
	}
	res.Calls = calls1 - calls0

	// 4. The heap the index keeps: live heap with it, minus live heap without it.
	var with, without runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&with)
	res.Sessions = published.Load().Sessions()
	if profileDir != "" {
		if err := writeHeapProfile(filepath.Join(profileDir, fmt.Sprintf("index-%d.heap.pprof", n))); err != nil {
			return nil, err
		}
	}
	published = nil
	runtime.GC()
	runtime.ReadMemStats(&without)
	res.Retained = int64(with.HeapAlloc) - int64(without.HeapAlloc)
	if want := sessionsOf(n); res.Sessions != want {
		return nil, fmt.Errorf("index holds %d sessions, want %d", res.Sessions, want)
	}
	return res, nil
}

// published is the index measurePoll builds, global so that dropping it is explicit.
var published *resolve.Index

// pollAndPublish runs Source.Poll and Index.Publish, timing each; the index goes to published.
func pollAndPublish(ctx context.Context, src *ec2.Source, res *pollResult) error {
	wall, cpu := time.Now(), selfCPU()
	targets, err := src.Poll(ctx)
	if err != nil {
		return err
	}
	res.PollWall, res.PollCPU = time.Since(wall), selfCPU()-cpu

	published = resolve.NewIndex(nil, nil)
	wall, cpu = time.Now(), selfCPU()
	published.Publish(resolve.Source{Name: benchRegion}, targets, wall)
	res.PublishWall, res.PublishCPU = time.Since(wall), selfCPU()-cpu
	return nil
}

// measureParts times the SDK's paging alone, then records the decoded pages in a second pass
// (not timed: keeping them alive makes every GC mark them) and times Source.Poll over those
// pages replayed from memory: the conversion alone. The recorded pages stay alive during the
// replay, so its GCs mark more than the daemon's would: the conversion figure errs high.
func measureParts(ctx context.Context, client *awsec2.Client, opts ec2.Options, n int, res *pollResult) error {
	runtime.GC()
	wall, cpu := time.Now(), selfCPU()
	got, err := describeAll(ctx, client)
	if err != nil {
		return err
	}
	res.SDKWall, res.SDKCPU = time.Since(wall), selfCPU()-cpu
	if got != n {
		return fmt.Errorf("SDK paging saw %d instances, want %d", got, n)
	}

	rec := &recordingClient{api: client}
	if _, err := describeAll(ctx, rec); err != nil {
		return err
	}
	src := ec2.NewSource(benchRegion, &replayClient{pages: rec.pages}, opts, nil)
	runtime.GC()
	wall, cpu = time.Now(), selfCPU()
	targets, err := src.Poll(ctx)
	if err != nil {
		return err
	}
	res.ConvertWall, res.ConvertCPU = time.Since(wall), selfCPU()-cpu
	if len(targets) != n {
		return fmt.Errorf("conversion gave %d targets, want %d", len(targets), n)
	}
	return nil
}

// recordingClient passes DescribeInstances on and keeps a slim copy of every page: only the
// instance fields Source reads (the strings themselves are shared, not copied). The full
// decoded pages are many times larger, and keeping them alive would make every GC during the
// replay mark far more than the daemon ever holds.
type recordingClient struct {
	api   awsec2.DescribeInstancesAPIClient
	pages []*awsec2.DescribeInstancesOutput
}

func (r *recordingClient) DescribeInstances(ctx context.Context, in *awsec2.DescribeInstancesInput, optFns ...func(*awsec2.Options)) (*awsec2.DescribeInstancesOutput, error) {
	out, err := r.api.DescribeInstances(ctx, in, optFns...)
	if err != nil {
		return out, err
	}
	slim := &awsec2.DescribeInstancesOutput{Reservations: make([]types.Reservation, len(out.Reservations))}
	for i, res := range out.Reservations {
		insts := make([]types.Instance, len(res.Instances))
		for j, inst := range res.Instances {
			insts[j] = types.Instance{
				InstanceId: inst.InstanceId, State: inst.State, Tags: inst.Tags, LaunchTime: inst.LaunchTime,
				PrivateDnsName: inst.PrivateDnsName, PrivateIpAddress: inst.PrivateIpAddress,
				PublicDnsName: inst.PublicDnsName, PublicIpAddress: inst.PublicIpAddress, Ipv6Address: inst.Ipv6Address,
			}
		}
		slim.Reservations[i].Instances = insts
	}
	r.pages = append(r.pages, slim)
	return out, nil
}

// replayClient answers DescribeInstances with recorded pages, in order.
type replayClient struct {
	pages []*awsec2.DescribeInstancesOutput
}

func (r *replayClient) DescribeInstances(_ context.Context, in *awsec2.DescribeInstancesInput, _ ...func(*awsec2.Options)) (*awsec2.DescribeInstancesOutput, error) {
	i := 0
	if in.NextToken != nil {
		i, _ = strconv.Atoi(*in.NextToken)
	}
	if i >= len(r.pages) {
		return nil, fmt.Errorf("replay: no page %d", i)
	}
	out := *r.pages[i]
	out.NextToken = nil
	if i+1 < len(r.pages) {
		out.NextToken = aws.String(strconv.Itoa(i + 1))
	}
	return &out, nil
}

// describeAll pages through DescribeInstances with the filters of a full poll and counts the
// instances, doing nothing else with them.
func describeAll(ctx context.Context, client awsec2.DescribeInstancesAPIClient) (int, error) {
	p := awsec2.NewDescribeInstancesPaginator(client, &awsec2.DescribeInstancesInput{
		Filters: []types.Filter{
			{Name: aws.String("tag-key"), Values: []string{discovery.DefaultTagKeys().SessionID}},
			{Name: aws.String("instance-state-name"), Values: []string{"running"}},
		},
		MaxResults: aws.Int32(1000),
	})
	n := 0
	for p.HasMorePages() {
		out, err := p.NextPage(ctx)
		if err != nil {
			return n, err
		}
		for _, r := range out.Reservations {
			n += len(r.Instances)
		}
	}
	return n, nil
}

func startCPUProfile(path string) (func(), error) {
	f, err := os.Create(path)
	if err != nil {
		return nil, err
	}
	if err := pprof.StartCPUProfile(f); err != nil {
		f.Close()
		return nil, err
	}
	return func() { pprof.StopCPUProfile(); f.Close() }, nil
}

func writeHeapProfile(path string) error {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	defer f.Close()
	return pprof.Lookup("heap").WriteTo(f, 0)
}
