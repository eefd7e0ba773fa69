# Plots of docs/results (run from docs/results by scripts/report.sh).
set terminal svg size 720,480 font "sans,12"
set grid
set key outside right

if (system("test -f fashion.dat && echo 1") eq "1") {
  set output "fashion_pareto.svg"
  set title "Fashion-MNIST, ResNet-20 style (10k train images, 3 epochs): size vs accuracy"
  set xlabel "true model size (MiB)"
  set ylabel "test accuracy (%)"
  set logscale x
  plot for [m in "fp32 ptq qat lsq diffq"] \
    sprintf("< awk '$1==\"%s\"' fashion.dat | sort -g -k3", m) using 3:4 with linespoints pt 7 title m
  unset logscale x
}
if (system("test -f groups.dat && echo 1") eq "1") {
  set output "groups_pareto.svg"
  set title "Fashion-MNIST, small CNN (10k images, 3 epochs): DiffQ group sizes"
  set xlabel "true model size (MiB)"
  set ylabel "test accuracy (%)"
  plot "groups.dat" using 3:4:2 with labels point pt 7 offset char 1,0.5 notitle
}
if (system("test -f lm.dat && echo 1") eq "1") {
  set output "lm_pareto.svg"
  set title "KJV language model (Transformer, 2 epochs): size vs perplexity"
  set xlabel "true model size (MiB)"
  set ylabel "test perplexity (lower is better)"
  plot for [m in "fp32 qat diffq"] \
    sprintf("< awk '$1==\"%s\"' lm.dat | sort -g -k3", m) using 3:4 with linespoints pt 7 title m
}
if (system("test -f bits_per_layer.dat && echo 1") eq "1") {
  set output "bits_per_layer.svg"
  set title "Bits per layer of a DiffQ ResNet-20 (mean over the tensor)"
  set xlabel "tensor"
  set ylabel "mean bits"
  set style fill solid 0.6
  set boxwidth 0.8
  set xtics rotate by -60 font ",8"
  unset key
  plot "bits_per_layer.dat" using 1:2:xtic(4) with boxes
}
