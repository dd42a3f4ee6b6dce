package main

import (
	"fmt"
	"net"
	"os"
)

// sdNotify sends a state line such as "READY=1" to the service manager when it asked for
// notifications ($NOTIFY_SOCKET, set for Type=notify units). Without the variable it does
// nothing: the daemon runs the same outside systemd.
func sdNotify(state string) error {
	path := os.Getenv("NOTIFY_SOCKET")
	if path == "" {
		return nil
	}
	if path[0] == '@' { // abstract socket namespace
		path = "\x00" + path[1:]
	}
	conn, err := net.DialUnix("unixgram", nil, &net.UnixAddr{Name: path, Net: "unixgram"})
	if err != nil {
		return fmt.Errorf("notify systemd: %w", err)
	}
	defer conn.Close()
	if _, err := conn.Write([]byte(state)); err != nil {
		return fmt.Errorf("notify systemd: %w", err)
	}
	return nil
}
