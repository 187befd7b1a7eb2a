# A Rack 2 app on WEBrick (Debian's ruby-rack and ruby-webrick), for tests/differential.rs.
#
# One listener per gatehouse route (the port that answers tells which route gatehouse
# chose); prints `LISTENING <port> ...`; answers every request with what Rack resolved:
# `PATH_INFO`, that path unescaped as Sinatra's router reads it, `QUERY_STRING`,
# `Rack::Request#params` (Rack 2 reads `[access_token]` and `access_token]` as
# `access_token`), and every `HTTP_*` key of the env. Exits when its standard input closes.

require 'json'
require 'rack'
require 'rack/handler/webrick'
require 'webrick'

def report(env, port)
  path = env['PATH_INFO'].to_s
  params =
    begin
      Rack::Request.new(env).params
    rescue StandardError => e
      # A query Rack refuses is one a Rack app would refuse too.
      { 'refused' => e.class.name }
    end
  JSON.generate(
    backend: 'rack',
    # Not `SERVER_PORT`: WEBrick takes that from the `Host` header.
    port: port,
    method: env['REQUEST_METHOD'],
    query: env['QUERY_STRING'].to_s,
    paths: {
      'PATH_INFO' => path,
      'Rack::Utils.unescape_path(PATH_INFO)' => Rack::Utils.unescape_path(path)
    },
    params: params,
    headers: env.select { |name, _| name.start_with?('HTTP_') }.to_a
  )
end

servers = Array.new(Integer(ARGV[0])) do
  server = WEBrick::HTTPServer.new(
    BindAddress: '127.0.0.1',
    Port: 0,
    Logger: WEBrick::Log.new(File::NULL),
    AccessLog: []
  )
  port = server.config[:Port]
  app = lambda do |env|
    body = report(env, port)
    [200, { 'Content-Type' => 'application/json', 'Content-Length' => body.bytesize.to_s }, [body]]
  end
  server.mount('/', Rack::Handler::WEBrick, app)
  Thread.new { server.start }
  server
end

puts "LISTENING #{servers.map { |s| s.config[:Port] }.join(' ')}"
$stdout.flush
$stdin.read
