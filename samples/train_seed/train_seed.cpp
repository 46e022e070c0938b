// Trains the seed network (conv-ReLU-maxpool twice, global average pool, linear) on a toy
// 10-class image set made on the spot, as a PyTorch user would: modules, cross-entropy,
// loss.backward(), Nesterov SGD on a one-cycle schedule, and a checkpoint at the end.
// Usage: strata_train_seed [epochs (default 10)]; the checkpoint goes to the current folder.
#include <algorithm>
#include <cstdio>
#include <random>
#include <string>
#include <vector>

#include <strata/strata.h>

using namespace strata;
constexpr int kClasses = 10, kSize = 12, kImages = 256, kBatch = 32;

// Class c: a 2x6 bar on uniform noise at a random place, horizontal for c < 5, lit in the
// channels of its colour's set bits (colour c % 5 + 1). Images (N, 3, kSize, kSize), on the host.
Tensor make_images(std::vector<std::int64_t>& labels) {
  Tensor images = Tensor::empty_host({kImages, 3, kSize, kSize}, DType::f32);
  fill_uniform(images, {.low = -1.0f, .high = 1.0f, .seed = 1}, nullptr);  // the noise
  float* pixels = images.data<float>();
  std::mt19937 rng(1);
  std::uniform_int_distribution<int> place(0, kSize - 6);
  for (int n = 0; n < kImages; ++n) {
    const int c = n % kClasses, colour = c % 5 + 1, top = place(rng), left = place(rng);
    labels.push_back(c);
    for (int i = 0; i < 12; ++i) {  // the bar's pixels: 6 along, 2 across
      const int y = top + (c < 5 ? i / 6 : i % 6), x = left + (c < 5 ? i % 6 : i / 6);
      for (int ch = 0; ch < 3; ++ch) pixels[((n * 3 + ch) * kSize + y) * kSize + x] += (colour >> ch & 1) ? 2.0f : 0.0f;
    }
  }
  return images;
}

int main(int argc, char** argv) try {
  const int epochs = argc > 1 ? std::stoi(argv[1]) : 10;
  std::vector<std::int64_t> host_labels;
  const Tensor images = make_images(host_labels).to_device(current_stream());
  const Tensor labels = Tensor::from_vector(host_labels, {kImages}).to_device(current_stream());
  manual_seed(0);  // the initial weights
  nn::Sequential model(nn::Conv2d(3, 8, 3, {.padding = 1}), nn::ReLU(), nn::MaxPool2d(2),
                       nn::Conv2d(8, 16, 3, {.padding = 1}), nn::ReLU(), nn::MaxPool2d(2),
                       nn::AdaptiveAvgPool2d(1), nn::Flatten(), nn::Linear(16, kClasses));
  std::printf("%s\n", model.repr().c_str());
  nn::CrossEntropyLoss cross_entropy;
  optim::SGD sgd(model.parameters(), {.lr = 0.2, .momentum = 0.9, .weight_decay = 5e-4, .nesterov = true});
  lr::Scheduler scheduler(lr::one_cycle_lr({.total_steps = epochs * kImages / kBatch, .pct_start = 0.25}));
  for (int epoch = 1; epoch <= epochs; ++epoch) {
    double loss_sum = 0.0;
    for (std::int64_t first = 0; first < kImages; first += kBatch) {
      sgd.set_lr_factor(scheduler.factor());
      sgd.zero_grad();
      Tensor loss = cross_entropy(model(images.narrow(0, first, kBatch)), labels.narrow(0, first, kBatch));
      loss.backward();
      sgd.step();
      scheduler.step();
      loss_sum += loss.to_vector<float>()[0];  // waits for the step: fine for a sample
    }
    model.eval();  // evaluation: eval mode, and no graph recorded
    autograd::NoGradGuard no_grad;
    const std::vector<float> logits = model(images).to_vector<float>();  // (N, kClasses)
    int correct = 0;
    for (std::size_t n = 0; n < kImages; ++n) {
      const auto row = logits.begin() + static_cast<std::ptrdiff_t>(n * kClasses);
      correct += std::max_element(row, row + kClasses) - row == host_labels[n];
    }
    model.train();
    std::printf("epoch %2d  lr %.4f  loss %.4f  accuracy %.1f%%\n", epoch, sgd.lr(0),
                loss_sum * kBatch / kImages, 100.0 * correct / kImages);
  }
  // The weights (PyTorch reads them), and what an exact resume needs besides.
  model.save("seed_network.safetensors");
  optim::save_training_state("seed_training.safetensors", {.optimizer = sgd, .scheduler = &scheduler},
                             {.global_step = scheduler.steps_taken()});
  return 0;
} catch (const std::exception& error) {
  std::fprintf(stderr, "strata_train_seed: %s\n", error.what());
  return 1;
}
