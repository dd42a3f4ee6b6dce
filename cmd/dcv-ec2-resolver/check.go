package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"

	"github.com/dcv-ec2-resolver/dcv-ec2-resolver/discovery/ec2"
	"github.com/dcv-ec2-resolver/dcv-ec2-resolver/discovery/sessionfile"
)

// checkTimeout bounds the whole check, every region included.
const checkTimeout = 2 * time.Minute

// check validates a configuration the way serve would use it and reports, in plain words,
// whether it works: the file, the sessions file, credentials, the DescribeInstances
// permission (a DryRun call) and what each region's poll would find. It returns 0 only when
// everything is in order.
func check(args []string, stdout, stderr io.Writer) int {
	configPath, status, parsed := parseConfigFlag("check", args, stderr)
	if !parsed {
		return status
	}
	ok := true
	say := func(good bool, format string, args ...any) {
		mark := "ok  "
		if !good {
			mark, ok = "FAIL", false
		}
		fmt.Fprintf(stdout, "%s  %s\n", mark, fmt.Sprintf(format, args...))
	}

	cfg, err := LoadConfig(configPath)
	if err != nil {
		say(false, "config: %v", err)
		return 1
	}
	say(true, "config %s is valid", configPath)

	if cfg.File.Path != "" {
		targets, err := sessionfile.Load(cfg.File.Path, cfg.Defaults)
		if err != nil {
			say(false, "sessions file: %v", err)
		} else {
			say(true, "sessions file %s pins %d sessions", cfg.File.Path, len(targets))
		}
	}
	if !cfg.EC2.Enabled {
		fmt.Fprintln(stdout, "      EC2 discovery is off (no [ec2] table)")
		if cfg.File.Path == "" {
			say(false, "no session source: add an [ec2] table or a [file] path")
		}
		return exitStatus(ok)
	}

	ctx, cancel := context.WithTimeout(context.Background(), checkTimeout)
	defer cancel()
	cc := cfg.EC2.clientConfig()
	awsCfg, err := ec2.LoadAWSConfig(ctx, cc)
	if err != nil {
		say(false, "%v", err)
		return 1
	}
	creds, err := awsCfg.Credentials.Retrieve(ctx)
	if err != nil {
		say(false, "AWS credentials: %v", err)
		fmt.Fprintln(stdout, "      attach an instance role (instance profile) to this instance, or set AWS credentials in the environment")
		return 1
	}
	say(true, "AWS credentials from %s", creds.Source)

	// Bad-tag warnings of the trial poll go to stderr in plain text.
	enc := zap.NewDevelopmentEncoderConfig()
	enc.TimeKey = ""
	log := zap.New(zapcore.NewCore(zapcore.NewConsoleEncoder(enc), zapcore.AddSync(stderr), zapcore.WarnLevel))
	opts := cfg.sourceOptions(nil)
	for _, rc := range ec2.NewClients(awsCfg, cc, nil, log) {
		region := rc.Region
		src := ec2.NewSource(region, rc.Client, opts, log)
		err := src.CheckPermission(ctx)
		switch {
		case errors.Is(err, ec2.ErrPermissionDenied):
			say(false, "%s: the role may not call ec2:DescribeInstances; attach the policy in /usr/share/doc/dcv-ec2-resolver/iam-policy.json to it", region)
			continue
		case err != nil:
			say(false, "%s: cannot reach EC2: %v", region, err)
			continue
		}
		say(true, "%s: ec2:DescribeInstances is allowed", region)
		targets, err := src.Poll(ctx)
		if err != nil {
			say(false, "%s: poll failed: %v", region, err)
			continue
		}
		sessions := 0
		for _, t := range targets {
			sessions += len(t.SessionIDs)
		}
		say(true, "%s: %d running instances tagged %s, serving %d sessions", region, len(targets), cfg.Tags.SessionID, sessions)
	}
	return exitStatus(ok)
}

func exitStatus(ok bool) int {
	if ok {
		return 0
	}
	return 1
}
