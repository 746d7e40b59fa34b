//! The HTTP servers under test, each started alone in the server namespace on CPU 0 and
//! port 8080, serving the same directory: megatcp-http on each backend, nginx and lighttpd
//! (one worker each, access log off, keep-alive limits raised; temporary configuration
//! files, never the system's services). Stopped by pid.

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use super::plan::Server;
use crate::procs::{self, CLI_NS, SERVER_CPU, SRV_BYPASS_IP, SRV_IF, SRV_KERNEL_IP, SRV_NS};

/// The port every server listens on.
pub(crate) const PORT: u16 = 8080;

/// The address `server` is reached at from the client namespace.
pub(crate) fn address(server: Server) -> &'static str {
    if server.is_bypass() {
        SRV_BYPASS_IP
    } else {
        SRV_KERNEL_IP
    }
}

fn nginx_conf(dir: &Path, www: &Path) -> String {
    let p = dir.display();
    format!(
        "worker_processes 1;\ndaemon off;\nmaster_process off;\npid {p}/nginx.pid;\n\
         error_log {p}/nginx-error.log;\nworker_rlimit_nofile 20000;\n\
         events {{ worker_connections 19000; multi_accept on; }}\n\
         http {{\n  include /etc/nginx/mime.types;\n  default_type application/octet-stream;\n\
         access_log off;\n  sendfile on;\n  tcp_nopush on;\n  tcp_nodelay on;\n\
         keepalive_requests 100000000;\n  keepalive_timeout 300s;\n  open_file_cache max=100;\n\
         client_body_temp_path {p}/nginx-tmp/body;\n  proxy_temp_path {p}/nginx-tmp/proxy;\n\
         fastcgi_temp_path {p}/nginx-tmp/fastcgi;\n  uwsgi_temp_path {p}/nginx-tmp/uwsgi;\n\
         scgi_temp_path {p}/nginx-tmp/scgi;\n\
         server {{ listen {SRV_KERNEL_IP}:{PORT} backlog=4096; root {}; }}\n}}\n",
        www.display()
    )
}

fn lighttpd_conf(dir: &Path, www: &Path) -> String {
    format!(
        "server.document-root = \"{}\"\nserver.bind = \"{SRV_KERNEL_IP}\"\nserver.port = {PORT}\n\
         server.pid-file = \"{d}/lighttpd.pid\"\nserver.errorlog = \"{d}/lighttpd-error.log\"\n\
         server.max-keep-alive-requests = 100000000\nserver.max-keep-alive-idle = 300\n\
         server.max-connections = 10000\nserver.max-fds = 20000\nserver.listen-backlog = 4096\n\
         mimetype.assign = ( \".bin\" => \"application/octet-stream\" )\n",
        www.display(),
        d = dir.display()
    )
}

/// Starts `server` serving `www` and waits until it answers from the client namespace.
pub(crate) fn start(
    server: Server,
    http_bin: &Path,
    www: &Path,
    dir: &Path,
) -> Result<procs::Server, String> {
    let log = dir.join(format!("server-{}.log", server.name()));
    let file = std::fs::File::create(&log).map_err(|e| format!("{}: {e}", log.display()))?;
    let mut cmd = Command::new("ip");
    cmd.args(["netns", "exec", SRV_NS]);
    match server {
        Server::Afxdp | Server::Dpdk | Server::Uring | Server::Epoll => {
            cmd.arg(http_bin)
                .args(["-p", &PORT.to_string(), "--cores", SERVER_CPU, "--root"])
                .arg(www)
                .args(["--backend", server.name()]);
            match server {
                Server::Afxdp => {
                    cmd.args(["--iface", SRV_IF, "--ip", &format!("{SRV_BYPASS_IP}/24")]);
                }
                Server::Dpdk => {
                    cmd.args(["--ip", &format!("{SRV_BYPASS_IP}/24")]);
                    cmd.arg(format!("--dpdk-args=--vdev net_af_xdp0,iface={SRV_IF}"));
                }
                _ => {}
            }
        }
        Server::Nginx => {
            let conf = dir.join("nginx.conf");
            std::fs::create_dir_all(dir.join("nginx-tmp")).map_err(|e| e.to_string())?;
            std::fs::write(&conf, nginx_conf(dir, www)).map_err(|e| e.to_string())?;
            cmd.args(["taskset", "-c", SERVER_CPU, "nginx", "-c"])
                .arg(&conf)
                .arg("-p")
                .arg(dir)
                .arg("-e")
                .arg(dir.join("nginx-error.log"));
        }
        Server::Lighttpd => {
            let conf = dir.join("lighttpd.conf");
            std::fs::write(&conf, lighttpd_conf(dir, www)).map_err(|e| e.to_string())?;
            cmd.args(["taskset", "-c", SERVER_CPU, "lighttpd", "-D", "-f"])
                .arg(&conf);
        }
    }
    let mut s = procs::Server::spawn(cmd, file, log)?;
    let url = format!("http://{}:{PORT}/64.bin", address(server));
    let end = Instant::now() + Duration::from_secs(20);
    loop {
        if !s.alive() {
            return Err(format!("server exited: {}", s.log_tail()));
        }
        let ok = Command::new("ip")
            .args([
                "netns",
                "exec",
                CLI_NS,
                "curl",
                "-sf",
                "-m",
                "1",
                "-o",
                "/dev/null",
                &url,
            ])
            .status()
            .is_ok_and(|st| st.success());
        if ok {
            return Ok(s);
        }
        if Instant::now() > end {
            s.stop();
            return Err(format!("server not answering after 20 s: {}", s.log_tail()));
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}
