package main

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path"
	"path/filepath"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/klab-dev/klab/cluster/runtime"
	"github.com/klab-dev/klab/cluster/runtime/image"
	"github.com/klab-dev/klab/internal/output"
	"github.com/klab-dev/klab/provision"
	"github.com/klab-dev/klab/provision/transport"
)

// addRuntimeCmds registers the pod runtime's commands: "pause" (a
// component), "image", and the hidden "internal shim".
func (a *app) addRuntimeCmds(root *cobra.Command) {
	p := a.pauseCmd()
	p.GroupID = "components"
	img := a.imageCmd()
	img.GroupID = "nodes"
	root.AddCommand(p, img)
	for _, c := range root.Commands() {
		if c.Name() == "internal" {
			c.AddCommand(a.shimCmd())
		}
	}
}

func (a *app) pauseCmd() *cobra.Command {
	var o runtime.PauseOptions
	readyFD := -1
	cmd := &cobra.Command{
		Use:   "pause",
		Short: "A pod's first process: holds its namespaces, reaps zombies",
		Long: `The first process of every pod. The runtime starts it in new network, IPC and
UTS namespaces (and a PID namespace when the pod shares one); it sets the
pod's hostname, brings up lo, and then only reaps zombies until SIGTERM or
SIGINT. The pod's containers join its namespaces.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if readyFD >= 0 {
				o.Ready = os.NewFile(uintptr(readyFD), "ready")
			}
			return runtime.Pause(o)
		},
	}
	cmd.Flags().StringVar(&o.Hostname, "hostname", "", "the pod's hostname")
	cmd.Flags().IntVar(&readyFD, "ready-fd", -1, "file descriptor to write \"ready\" to once set up")
	return cmd
}

func (a *app) shimCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "shim",
		Short: "A container's init (run by the runtime in the pod's namespaces)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			return runtime.Shim(os.Stdin, os.Stdout)
		},
	}
}

func (a *app) imageCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "image",
		Short: "Import and list the images pods run",
		Long: `Pods run images from their node's image store (/var/lib/klab/images): the
built-in busybox image, and images you import from an OCI layout or a
docker-archive tarball. Nothing is ever pulled from a registry.`,
	}
	var root string
	var nodes []string
	var as string
	imp := &cobra.Command{
		Use:   "import FILE",
		Short: "Import an image from an OCI layout or a docker-archive tarball",
		Long: `Import an image into a node's image store. FILE is an OCI layout directory,
a tar of one (podman save --format oci-archive), or a docker-archive
tarball (docker save). With --node, FILE (a tar file) is copied to each node
named and imported there; without, into this machine's store (run it on a
node with klab node exec).`,
		Example: `  docker save nginx:1.25 -o nginx.tar
  sudo klab image import nginx.tar --node node1 --node node2
  sudo klab image import ./app-layout --name example.com/app:1`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if len(nodes) == 0 {
				store := &image.Store{Root: root}
				img, err := store.Import(cmd.Context(), args[0], as)
				if err != nil {
					return err
				}
				fmt.Fprintf(a.stdout, "imported %s (%s, %s)\n", img.Name, shortID(img.ID), size(img.Size))
				return nil
			}
			for _, n := range nodes {
				if err := a.importOnNode(cmd, n, args[0], as); err != nil {
					return err
				}
			}
			return nil
		},
	}
	imp.Flags().StringVar(&as, "name", "", "NAME:TAG to store the image as (default: the name the file records)")
	imp.Flags().StringArrayVar(&nodes, "node", nil, "import on this node of the cluster (repeatable)")
	imp.Flags().StringVar(&root, "root", image.DefaultRoot, "image store directory")
	imp.RegisterFlagCompletionFunc("node", a.completeNodes)

	var format string
	var node string
	list := &cobra.Command{
		Use:   "list",
		Short: "List the images in a node's store",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := output.Check(format); err != nil {
				return err
			}
			if node != "" {
				t, err := a.transport(node)
				if err != nil {
					return err
				}
				defer t.Close()
				err = t.Run(cmd.Context(), transport.Cmd{Args: []string{provision.NodeBinary, "image", "list", "-o", format}, Stdout: a.stdout, Stderr: a.stderr})
				return remoteExit(err)
			}
			store := &image.Store{Root: root}
			imgs, err := store.List()
			if err != nil {
				return err
			}
			return output.Print(a.stdout, format, imgs, func(tw *tabwriter.Writer, wide bool) {
				fmt.Fprintln(tw, "NAME\tID\tSIZE\tIMPORTED")
				for _, i := range imgs {
					fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", i.Name, shortID(i.ID), size(i.Size), i.Imported.Local().Format(time.DateTime))
				}
			})
		},
	}
	outputFlag(list, &format)
	list.Flags().StringVar(&node, "node", "", "list the images of this node of the cluster")
	list.Flags().StringVar(&root, "root", image.DefaultRoot, "image store directory")
	list.RegisterFlagCompletionFunc("node", a.completeNodes)
	cmd.AddCommand(imp, list)
	return cmd
}

// importOnNode copies an image file to a node and imports it there.
func (a *app) importOnNode(cmd *cobra.Command, node, file, as string) error {
	st, err := os.Stat(file)
	if err != nil {
		return err
	}
	if st.IsDir() {
		return fmt.Errorf("%s is a directory: to import it on a node, pack it first (tar -C %s -cf image.tar .)", file, file)
	}
	t, err := a.transport(node)
	if err != nil {
		return err
	}
	defer t.Close()
	remote := path.Join(image.DefaultRoot, ".incoming-"+filepath.Base(file))
	if err := t.CopyFile(cmd.Context(), file, remote, 0o600); err != nil {
		return fmt.Errorf("copy %s to %s: %w", file, node, err)
	}
	args := []string{provision.NodeBinary, "image", "import", remote}
	if as != "" {
		args = append(args, "--name", as)
	}
	var out, errb bytes.Buffer
	err = t.Run(cmd.Context(), transport.Cmd{Args: args, Stdout: &out, Stderr: &errb})
	rmErr := t.Run(cmd.Context(), transport.Cmd{Args: []string{"rm", "-f", remote}})
	if err != nil {
		msg := strings.TrimSpace(errb.String())
		if msg == "" {
			msg = err.Error()
		}
		return fmt.Errorf("import on %s: %s", node, msg)
	}
	fmt.Fprintf(a.stdout, "%s: %s", node, out.String())
	return errors.Join(rmErr)
}

func shortID(id string) string {
	_, hex, _ := strings.Cut(id, ":")
	if len(hex) > 12 {
		hex = hex[:12]
	}
	return hex
}

func size(n int64) string {
	switch {
	case n >= 1<<30:
		return fmt.Sprintf("%.1fGiB", float64(n)/(1<<30))
	case n >= 1<<20:
		return fmt.Sprintf("%.1fMiB", float64(n)/(1<<20))
	case n >= 1<<10:
		return fmt.Sprintf("%.1fKiB", float64(n)/(1<<10))
	}
	return fmt.Sprintf("%dB", n)
}
