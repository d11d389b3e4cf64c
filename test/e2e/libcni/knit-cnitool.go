// knit-cnitool: a cnitool-compatible driver over libcni, the client container runtimes use.
// Built during the test run in GOPATH mode against Debian's golang-github-appc-cni-dev.
//
//	knit-cnitool add|check|del|validate <conflist.json> <netns-path> [ifname] [containerid]
//	knit-cnitool version <plugin-type>
//
// Environment: CNI_PATH (plugin dirs), CNI_CACHE_DIR (result cache, default libcni's),
// CAP_ARGS (JSON capability args, e.g. {"portMappings":[...]}), CNI_ARGS_PAIRS ("K=V;K2=V2").
// Results go to stdout as JSON; a failure prints the plugin's CNI error JSON to stdout when
// there is one, the message to stderr, and exits 1.
package main

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/containernetworking/cni/libcni"
	"github.com/containernetworking/cni/pkg/types"
)

func fail(err error) {
	if e, ok := err.(*types.Error); ok {
		out, _ := json.Marshal(e)
		fmt.Println(string(out))
	}
	fmt.Fprintln(os.Stderr, "knit-cnitool:", err)
	os.Exit(1)
}

func main() {
	if len(os.Args) < 3 {
		fmt.Fprintln(os.Stderr, "usage: knit-cnitool add|check|del|validate <conflist> <netns> [ifname] [containerid] | version <type>")
		os.Exit(2)
	}
	ctx := context.Background()
	paths := filepath.SplitList(os.Getenv("CNI_PATH"))
	cni := libcni.NewCNIConfigWithCacheDir(paths, os.Getenv("CNI_CACHE_DIR"), nil)

	if os.Args[1] == "version" {
		info, err := cni.GetVersionInfo(ctx, os.Args[2])
		if err != nil {
			fail(err)
		}
		out, _ := json.Marshal(map[string]interface{}{"supportedVersions": info.SupportedVersions()})
		fmt.Println(string(out))
		return
	}

	list, err := libcni.ConfListFromFile(os.Args[2])
	if err != nil {
		fail(err)
	}
	if os.Args[1] == "validate" {
		caps, err := cni.ValidateNetworkList(ctx, list)
		if err != nil {
			fail(err)
		}
		out, _ := json.Marshal(map[string]interface{}{"capabilities": caps})
		fmt.Println(string(out))
		return
	}
	if len(os.Args) < 4 {
		fail(fmt.Errorf("%s needs a netns path", os.Args[1]))
	}
	rt := &libcni.RuntimeConf{NetNS: os.Args[3], IfName: "eth0", ContainerID: "cnitool-" + filepath.Base(os.Args[3])}
	if len(os.Args) > 4 {
		rt.IfName = os.Args[4]
	}
	if len(os.Args) > 5 {
		rt.ContainerID = os.Args[5]
	}
	if s := os.Getenv("CAP_ARGS"); s != "" {
		if err := json.Unmarshal([]byte(s), &rt.CapabilityArgs); err != nil {
			fail(fmt.Errorf("CAP_ARGS: %v", err))
		}
	}
	for _, kv := range strings.Split(os.Getenv("CNI_ARGS_PAIRS"), ";") {
		if k, v, ok := strings.Cut(kv, "="); ok {
			rt.Args = append(rt.Args, [2]string{k, v})
		}
	}

	switch os.Args[1] {
	case "add":
		res, err := cni.AddNetworkList(ctx, list, rt)
		if err != nil {
			fail(err)
		}
		out, _ := json.Marshal(res)
		fmt.Println(string(out))
	case "check":
		if err := cni.CheckNetworkList(ctx, list, rt); err != nil {
			fail(err)
		}
	case "del":
		if err := cni.DelNetworkList(ctx, list, rt); err != nil {
			fail(err)
		}
	default:
		fail(fmt.Errorf("unknown command %q: add, check, del, validate or version", os.Args[1]))
	}
}
