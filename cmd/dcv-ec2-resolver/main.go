// Command dcv-ec2-resolver is a session resolver for the Amazon DCV Connection Gateway. It
// finds DCV hosts by their EC2 tags (and an optional sessions file) and answers the gateway's
// POST /resolveSession requests from memory.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
)

// version is set at build time with -ldflags "-X main.version=...".
var version = "dev"

const usage = `dcv-ec2-resolver: session resolver for the Amazon DCV Connection Gateway.

It finds DCV hosts by their EC2 instance tags (dcv:session-id, dcv:http-port, ...) and an
optional sessions file, and answers the gateway's POST /resolveSession from memory.

Usage:
  dcv-ec2-resolver serve [--config FILE]   run the resolver (default config: %[1]s)
  dcv-ec2-resolver check [--config FILE]   check the config, credentials, IAM permission
                                           and what EC2 discovery finds; exit 0 if all is well
  dcv-ec2-resolver version                 print the version
  dcv-ec2-resolver help                    print this help

Gateway configuration (/etc/dcv-connection-gateway/dcv-connection-gateway.conf):
  [resolver]
  url = "http://localhost:9000"

Signals: SIGINT and SIGTERM shut down gracefully, letting requests in flight finish.
`

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

// run executes one command line and returns the exit status: 0 for success, 1 for a failure
// while running, 2 for a usage or configuration error.
func run(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprintf(stderr, usage, defaultConfigPath)
		return 2
	}
	switch args[0] {
	case "help", "-h", "-help", "--help":
		fmt.Fprintf(stdout, usage, defaultConfigPath)
		return 0
	case "version", "--version":
		fmt.Fprintf(stdout, "dcv-ec2-resolver %s\n", version)
		return 0
	case "serve":
		return serve(args[1:], stderr)
	case "check":
		return check(args[1:], stdout, stderr)
	}
	fmt.Fprintf(stderr, "dcv-ec2-resolver: unknown command %q\n\n", args[0])
	fmt.Fprintf(stderr, usage, defaultConfigPath)
	return 2
}

// parseConfigFlag parses a command's only flag, --config. When it returns false, the command
// is done and exits with status: 0 after --help, 2 after a usage error.
func parseConfigFlag(command string, args []string, stderr io.Writer) (path string, status int, ok bool) {
	fs := flag.NewFlagSet(command, flag.ContinueOnError)
	fs.SetOutput(stderr)
	configPath := fs.String("config", defaultConfigPath, "configuration `file` (TOML)")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return "", 0, false
		}
		return "", 2, false
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "dcv-ec2-resolver %s: unexpected argument %q\n", command, fs.Arg(0))
		return "", 2, false
	}
	return *configPath, 0, true
}

func serve(args []string, stderr io.Writer) int {
	configPath, status, ok := parseConfigFlag("serve", args, stderr)
	if !ok {
		return status
	}
	cfg, err := LoadConfig(configPath)
	if err != nil {
		fmt.Fprintf(stderr, "dcv-ec2-resolver: %v\n", err)
		return 2
	}
	log, level, closeLog, err := newLogger(cfg.Log, stderr)
	if err != nil {
		fmt.Fprintf(stderr, "dcv-ec2-resolver: log: %v\n", err)
		return 2
	}
	defer closeLog()

	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	reload := make(chan struct{}, 1)
	go func() {
		for range hup {
			select {
			case reload <- struct{}{}:
			default: // a reload is already pending
			}
		}
	}()

	log.Info("starting", zap.String("version", version), zap.String("config", configPath))
	d, err := newDaemon(ctx, cfg, log, level)
	if err != nil {
		log.Error("cannot start", zap.Error(err))
		return 1
	}
	if err := d.run(ctx, configPath, reload); err != nil {
		log.Error("stopped", zap.Error(err))
		return 1
	}
	log.Info("stopped")
	return 0
}

// newLogger builds the zap logger the config asks for, writing to w (the journal, under
// systemd). The returned level can be changed while running, by a reload; close flushes.
//
// Output is buffered (up to 256 KiB, flushed every second) because a busy gateway logs one
// line per request and a write system call per line was the largest cost of a request in
// make bench; warnings and errors are flushed at once, so they are never held back.
func newLogger(c LogConfig, w io.Writer) (log *zap.Logger, level zap.AtomicLevel, close func(), err error) {
	level, err = zap.ParseAtomicLevel(c.Level)
	if err != nil {
		return nil, level, nil, err
	}
	var enc zapcore.Encoder
	if c.Format == "console" {
		ec := zap.NewDevelopmentEncoderConfig()
		ec.EncodeLevel = zapcore.CapitalLevelEncoder
		enc = zapcore.NewConsoleEncoder(ec)
	} else {
		ec := zap.NewProductionEncoderConfig()
		ec.EncodeTime = zapcore.ISO8601TimeEncoder
		ec.EncodeDuration = zapcore.MillisDurationEncoder
		enc = zapcore.NewJSONEncoder(ec)
	}
	out := &zapcore.BufferedWriteSyncer{WS: zapcore.AddSync(w), Size: 256 << 10, FlushInterval: time.Second}
	core := flushAtWarn{Core: zapcore.NewCore(enc, out, level), out: out}
	log = zap.New(core, zap.ErrorOutput(zapcore.Lock(zapcore.AddSync(w))))
	return log, level, func() { _ = out.Stop() }, nil
}

// flushAtWarn is a core whose buffered output is flushed after every warning or error.
type flushAtWarn struct {
	zapcore.Core
	out zapcore.WriteSyncer
}

func (c flushAtWarn) With(fields []zapcore.Field) zapcore.Core {
	return flushAtWarn{Core: c.Core.With(fields), out: c.out}
}

func (c flushAtWarn) Check(e zapcore.Entry, ce *zapcore.CheckedEntry) *zapcore.CheckedEntry {
	if c.Enabled(e.Level) {
		return ce.AddCore(e, c)
	}
	return ce
}

func (c flushAtWarn) Write(e zapcore.Entry, fields []zapcore.Field) error {
	err := c.Core.Write(e, fields)
	if e.Level >= zapcore.WarnLevel {
		_ = c.out.Sync()
	}
	return err
}
