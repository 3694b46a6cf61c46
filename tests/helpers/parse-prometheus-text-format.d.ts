// Types for the npm package parse-prometheus-text-format (it ships none): the prom2json shape.
declare module "parse-prometheus-text-format" {
  export type Sample = {
    value?: string;
    labels?: Record<string, string>;
    /** Histograms: cumulative count by upper bound ("0.1", "+Inf"). */
    buckets?: Record<string, string>;
    count?: string;
    sum?: string;
  };
  export type MetricFamily = { name: string; help: string; type: "COUNTER" | "GAUGE" | "HISTOGRAM" | "SUMMARY" | "UNTYPED"; metrics: Sample[] };
  export default function parsePrometheusTextFormat(text: string): MetricFamily[];
}
